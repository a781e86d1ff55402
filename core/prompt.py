"""The prompt format of record: ChatML turns, as text and as a Jinja chat template.

Training, evaluation and every engine format prompts through this module:
``format_chat`` builds the training/eval text, and ``CHAT_TEMPLATE`` (written
into every tokenizer the project saves) renders an OpenAI-style chat into the
same text, so that ``vllm serve`` and ``transformers serve`` see exactly what
training saw. ChatML (``<|im_start|>role\\n…<|im_end|>``) is the format
SmolLM2-Instruct was tuned in; it beat the seed's Alpaca template on the
evaluation set (``benchmarks/prompt_format.py``, figures in ``benchmarks/README.md``).
Unlike SmolLM2's own template it adds no default system line: the gateway's
guard always sends the project's preamble as the first system message.

A chat carries the Alpaca ``input`` (clinical context) inside the user message,
after a ``Clinical context:`` line; ``to_messages`` builds such a message. Approved
answers retrieved for a question travel in a second system message
(``context_message``), in training as in serving.

>>> print(format_prompt("Define neutropenia.", system="Be brief."), end="")
<|im_start|>system
Be brief.<|im_end|>
<|im_start|>user
Define neutropenia.<|im_end|>
<|im_start|>assistant
"""

from __future__ import annotations

INPUT_MARKER = "\n\nClinical context:\n"
TURN_END = "<|im_end|>"
CONTEXT_HEADER = ("Reviewed answers that OncoLoop clinicians approved for similar questions. Use them when they "
                  "answer the question; they do not replace clinical judgement.")


def format_prompt(instruction: str, input: str = "", system: str | list[str] | None = None) -> str:
    """The prompt for one instruction, ending where the response begins.

    Args:
        instruction: the question or task.
        input: optional clinical context; empty means none.
        system: optional system message(s) (the guard's preamble, retrieved context).

    >>> format_prompt("Q", "ctx").endswith("<|im_start|>user\\nQ\\n\\nClinical context:\\nctx<|im_end|>\\n<|im_start|>assistant\\n")
    True
    """
    return format_chat(to_messages(instruction, input, system))


def to_messages(instruction: str, input: str = "", system: str | list[str] | None = None) -> list[dict]:
    """An OpenAI-style chat for one Alpaca instruction (context kept after ``Clinical context:``).

    >>> to_messages("Stage it.", "T2 N0 M0")
    [{'role': 'user', 'content': 'Stage it.\\n\\nClinical context:\\nT2 N0 M0'}]
    >>> [m["role"] for m in to_messages("Q", system=["preamble", "context"])]
    ['system', 'system', 'user']
    """
    content = instruction.strip() + (INPUT_MARKER + input.strip() if input.strip() else "")
    systems = [system] if isinstance(system, str) else list(system or [])
    return [{"role": "system", "content": s} for s in systems if s] + [{"role": "user", "content": content}]


def context_message(examples: list[tuple[str, str]]) -> str:
    """The system message that gives the model approved question/answer pairs as context.

    >>> print(context_message([("What is ECOG 1?", "Restricted in strenuous activity.")]))
    Reviewed answers that OncoLoop clinicians approved for similar questions. Use them when they answer the question; they do not replace clinical judgement.
    <BLANKLINE>
    Question: What is ECOG 1?
    Answer: Restricted in strenuous activity.
    """
    parts = [CONTEXT_HEADER] + [f"Question: {q.strip()}\nAnswer: {a.strip()}" for q, a in examples]
    return "\n\n".join(parts)


def format_chat(messages: list[dict], add_generation_prompt: bool = True) -> str:
    """Render a chat as ChatML text; the Python twin of ``CHAT_TEMPLATE``.

    >>> format_chat([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], False)
    '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello<|im_end|>\\n'
    """
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}{TURN_END}\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


# Jinja twin of format_chat; tests/finetune/test_prompt.py checks the two agree byte for byte.
CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)
