"""The Alpaca text and the chat template stored in tokenizers render identically."""

import jinja2
import pytest
from transformers import AutoTokenizer

from finetune.prompt import CHAT_TEMPLATE, format_chat, format_prompt, to_messages

CASES = [
    ("What is the usual first-line regimen for advanced Hodgkin lymphoma?", ""),
    ("Which staging system applies?", "54-year-old woman, 2.4 cm invasive ductal carcinoma, 1 positive axillary node"),
]


@pytest.fixture(scope="module")
def saved_tokenizer(bundled_model):
    return AutoTokenizer.from_pretrained(bundled_model)


def test_alpaca_text_without_input():
    assert format_prompt("Define neutropenia.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nDefine neutropenia.\n\n### Response:\n")


def test_alpaca_text_with_input():
    assert format_prompt("Stage it.", "T2 N1 M0") == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request."
        "\n\n### Instruction:\nStage it.\n\n### Input:\nT2 N1 M0\n\n### Response:\n")


@pytest.mark.parametrize("instruction,context", CASES)
def test_saved_tokenizer_template_matches_training_text(saved_tokenizer, instruction, context):
    rendered = saved_tokenizer.apply_chat_template(to_messages(instruction, context), tokenize=False,
                                                   add_generation_prompt=True)
    assert rendered == format_prompt(instruction, context)
    assert saved_tokenizer.chat_template == CHAT_TEMPLATE


@pytest.mark.parametrize("messages", [
    to_messages("Q1", system="You support clinicians."),
    to_messages("Q1", "ctx") + [{"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}],
])
def test_jinja_and_python_agree_on_system_and_multi_turn(messages):
    template = jinja2.Environment().from_string(CHAT_TEMPLATE)
    for gen in (True, False):
        assert template.render(messages=messages, add_generation_prompt=gen) == format_chat(messages, gen)
