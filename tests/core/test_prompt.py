"""The ChatML prompt text and the chat template stored in tokenizers render identically."""

import jinja2
import pytest
from transformers import AutoTokenizer

from core.prompt import CHAT_TEMPLATE, CONTEXT_HEADER, context_message, format_chat, format_prompt, to_messages

CASES = [
    ("What is the usual first-line regimen for advanced Hodgkin lymphoma?", ""),
    ("Which staging system applies?", "54-year-old woman, 2.4 cm invasive ductal carcinoma, 1 positive axillary node"),
]


@pytest.fixture(scope="module")
def saved_tokenizer(bundled_model):
    return AutoTokenizer.from_pretrained(bundled_model)


def test_chatml_text_without_input_has_no_default_system_line():
    assert format_prompt("Define neutropenia.") == (
        "<|im_start|>user\nDefine neutropenia.<|im_end|>\n<|im_start|>assistant\n")


def test_chatml_text_with_input_preamble_and_retrieved_context():
    text = format_prompt("Stage it.", "T2 N1 M0", ["You support clinicians.", context_message([("Q?", "A.")])])
    assert text == ("<|im_start|>system\nYou support clinicians.<|im_end|>\n"
                    "<|im_start|>system\n" + CONTEXT_HEADER + "\n\nQuestion: Q?\nAnswer: A.<|im_end|>\n"
                    "<|im_start|>user\nStage it.\n\nClinical context:\nT2 N1 M0<|im_end|>\n"
                    "<|im_start|>assistant\n")


@pytest.mark.parametrize("instruction,context", CASES)
def test_saved_tokenizer_template_matches_training_text(saved_tokenizer, instruction, context):
    rendered = saved_tokenizer.apply_chat_template(to_messages(instruction, context), tokenize=False,
                                                   add_generation_prompt=True)
    assert rendered == format_prompt(instruction, context)
    assert saved_tokenizer.chat_template == CHAT_TEMPLATE
    # the turn end is one token and the end of sequence, so generation stops where a turn ends
    assert saved_tokenizer.eos_token == "<|im_end|>"
    assert saved_tokenizer.convert_tokens_to_ids("<|im_end|>") == saved_tokenizer.eos_token_id


@pytest.mark.parametrize("messages", [
    to_messages("Q1", system="You support clinicians."),
    to_messages("Q1", "ctx") + [{"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}],
])
def test_jinja_and_python_agree_on_system_and_multi_turn(messages):
    template = jinja2.Environment().from_string(CHAT_TEMPLATE)
    for gen in (True, False):
        assert template.render(messages=messages, add_generation_prompt=gen) == format_chat(messages, gen)
