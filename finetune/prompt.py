"""The prompt format of record: Alpaca, as text and as a Jinja chat template.

Training, evaluation and every engine format prompts through this module:
``format_prompt`` builds the training/eval text, and ``CHAT_TEMPLATE`` (written
into every tokenizer the project saves) renders an OpenAI-style chat into the
same text, so that ``vllm serve`` and ``transformers serve`` see exactly what
training saw.

A chat carries the Alpaca ``input`` (clinical context) inside the user message,
after an ``### Input:`` line, exactly as it appears in the training text;
``to_messages`` builds such a message.

>>> print(format_prompt("Define neutropenia."), end="")
Below is an instruction that describes a task. Write a response that appropriately completes the request.
<BLANKLINE>
### Instruction:
Define neutropenia.
<BLANKLINE>
### Response:
"""

from __future__ import annotations

HEADER = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
)
HEADER_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
)
INPUT_MARKER = "\n\n### Input:\n"


def format_prompt(instruction: str, input: str = "", system: str | None = None) -> str:
    """The Alpaca prompt for one instruction, ending where the response begins.

    Args:
        instruction: the question or task.
        input: optional clinical context; empty means the no-input variant.
        system: optional system preamble, placed before the Alpaca header.

    >>> format_prompt("Q", "ctx").endswith("### Instruction:\\nQ\\n\\n### Input:\\nctx\\n\\n### Response:\\n")
    True
    """
    return format_chat(to_messages(instruction, input, system))


def to_messages(instruction: str, input: str = "", system: str | None = None) -> list[dict]:
    """An OpenAI-style chat for one Alpaca instruction (context kept after ``### Input:``).

    >>> to_messages("Stage it.", "T2 N0 M0")
    [{'role': 'user', 'content': 'Stage it.\\n\\n### Input:\\nT2 N0 M0'}]
    """
    content = instruction.strip() + (INPUT_MARKER + input.strip() if input.strip() else "")
    messages = [{"role": "user", "content": content}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return messages


def format_chat(messages: list[dict], add_generation_prompt: bool = True) -> str:
    """Render a chat as Alpaca text; the Python twin of ``CHAT_TEMPLATE``.

    System messages come first as a paragraph each; then the header (with-input
    variant when the first user message carries an ``### Input:`` part); then one
    ``### Instruction`` / ``### Response`` block per turn.
    """
    system = "".join(m["content"] + "\n\n" for m in messages if m["role"] == "system")
    turns = [m for m in messages if m["role"] != "system"]
    first_user = next((m["content"] for m in turns if m["role"] == "user"), "")
    text = system + (HEADER_WITH_INPUT if INPUT_MARKER in first_user else HEADER)
    for m in turns:
        if m["role"] == "user":
            text += "### Instruction:\n" + m["content"] + "\n\n"
        elif m["role"] == "assistant":
            text += "### Response:\n" + m["content"] + "\n\n"
    if add_generation_prompt:
        text += "### Response:\n"
    return text


# Jinja twin of format_chat. Whitespace control ({%- -%}) keeps the rendered text
# byte-identical; tests/finetune/test_prompt.py checks the two agree.
CHAT_TEMPLATE = (
    "{%- set ns = namespace(first_user='') -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{{ m['content'] }}{{ '\\n\\n' }}{%- endif -%}"
    "{%- if m['role'] == 'user' and ns.first_user == '' -%}{%- set ns.first_user = m['content'] -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if '\\n\\n### Input:\\n' in ns.first_user -%}"
    "{{ '" + HEADER_WITH_INPUT.replace("\n", "\\n") + "' }}"
    "{%- else -%}"
    "{{ '" + HEADER.replace("\n", "\\n") + "' }}"
    "{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}{{ '### Instruction:\\n' }}{{ m['content'] }}{{ '\\n\\n' }}"
    "{%- elif m['role'] == 'assistant' -%}{{ '### Response:\\n' }}{{ m['content'] }}{{ '\\n\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '### Response:\\n' }}{%- endif -%}"
)
