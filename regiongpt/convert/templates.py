"""Chat templates that reproduce the original models' prompt formats with our processor.

Our processor renders ``[system, user, assistant, ...]`` with the tokenizer's chat template and
puts the image placeholders (then a newline) at the start of the first user turn.
"""

from __future__ import annotations

LLAVA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

#: LLaVA-1.5 (``vicuna_v1``): ``<s>SYSTEM USER: <image>\nQ ASSISTANT: A</s>USER: ...``.
VICUNA_V1_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + ' ' }}"
    "{% elif message['role'] == 'user' %}{{ 'USER: ' + message['content'] + ' ' }}"
    "{% else %}{{ 'ASSISTANT: ' + message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

#: GPT4RoI (LLaVA v0 ``###`` format, ``mm_use_im_start_end``): ``<s>SYSTEM\n\n### Human: The
#: <im_start><im_patch>*256<im_end> provides an overview of the picture.\nQ\n### Assistant: A\n``.
#: The model ends answers with ``###`` rather than ``</s>``: the converted config's ``stop_strings``
#: makes generation stop there and cuts the answer before it.
GPT4ROI_V0_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set content = message['content'] %}"
    "{% if message['role'] == 'system' %}{{ content + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}"
    "{% if '<im_patch>' in content %}"
    "{% set content = content | replace('<im_patch>', 'The <im_start><im_patch>', 1)"
    " | replace('<im_patch>\\n', '<im_patch><im_end> provides an overview of the picture.\\n', 1) %}"
    "{% endif %}"
    "{{ '### Human: ' + content + '\\n' }}"
    "{% else %}{{ '### Assistant: ' + content + '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:' }}{% endif %}"
)
