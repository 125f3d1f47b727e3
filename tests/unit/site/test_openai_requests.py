"""The model server's request parsing: OpenAI-compatible bodies become generations; the rest is refused by name."""
from __future__ import annotations

import pytest

from hypergraph_site.demo.model_server import Generation
from hypergraph_site.demo.openai_http import RequestError, chat_prompt, chat_request, completion_request

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " What is a list? "}]


def test_a_completion_request_with_everything_it_may_carry() -> None:
    generation, logprobs = completion_request({"prompt": ["The for statement"], "max_tokens": 7, "temperature": 0.5,
                                               "seed": 3, "logprobs": 2, "frequency_penalty": 1.0,
                                               "model": "any", "user": "ignored"})
    assert generation == Generation(prompt="The for statement", max_tokens=7, temperature=0.5, top_logprobs=2,
                                    seed=3, frequency_penalty=1.0)
    assert logprobs is True
    assert completion_request({"prompt": "x"}) == (Generation(prompt="x", max_tokens=16), False)


def test_a_prompt_of_token_ids_is_scored_with_echo_and_no_new_tokens() -> None:
    generation, logprobs = completion_request({"prompt": [5, 17, 3], "echo": True, "max_tokens": 0, "logprobs": 0})
    assert generation == Generation(prompt=(5, 17, 3), max_tokens=0, echo=True) and logprobs is True


def test_chat_messages_become_a_plain_prompt_the_model_continues() -> None:
    generation, logprobs = chat_request({"messages": MESSAGES, "logprobs": True, "top_logprobs": 5})
    assert generation.prompt == chat_prompt(MESSAGES) == "System: Be brief.\n\nUser: What is a list?\n\nAssistant:"
    assert (generation.top_logprobs, logprobs) == (5, True)


@pytest.mark.parametrize("parse, body, param", [
    (completion_request, {"prompt": "x", "max_tokens": 100000}, "max_tokens"),
    (completion_request, {"prompt": "x", "max_tokens": "5"}, "max_tokens"),
    (completion_request, {"prompt": "x", "temperature": 3}, "temperature"),
    (completion_request, {"prompt": "x", "logprobs": 6}, "logprobs"),
    (completion_request, {"prompt": "x", "n": 2}, "n"),
    (completion_request, {"prompt": "x", "stop": ["."]}, "stop"),
    (completion_request, {"prompt": "x", "echo": True}, "echo"),  # echo scores: max_tokens must be 0
    (completion_request, {"prompt": "x", "echo": True, "max_tokens": 0, "stream": True}, "echo"),
    (completion_request, {"prompt": "x", "echo": "yes", "max_tokens": 0}, "echo"),
    (completion_request, {"prompt": "x", "max_tokens": 0}, "max_tokens"),
    (completion_request, {"prompt": [1, True]}, "prompt"),
    (completion_request, {"prompt": list(range(5000))}, "prompt"),
    (chat_request, {"messages": MESSAGES, "echo": True}, "echo"),
    (completion_request, {"prompt": ""}, "prompt"),
    (completion_request, {"prompt": ["a", "b"]}, "prompt"),
    (completion_request, {"prompt": "x" * 40000}, "prompt"),
    (completion_request, [1, 2], None),
    (chat_request, {"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0]"),
    (chat_request, {"messages": [{"role": "user", "content": 5}]}, "messages[0]"),
    (chat_request, {"messages": []}, "messages"),
    (chat_request, {"messages": MESSAGES * 40}, "messages"),
    (chat_request, {"messages": MESSAGES, "top_logprobs": 2}, "top_logprobs"),
    (chat_request, {"messages": MESSAGES, "logprobs": 1}, "logprobs"),
    (chat_request, {"messages": MESSAGES, "tools": [{}]}, "tools"),
])
def test_what_the_server_cannot_honour_is_refused_by_name(parse, body, param) -> None:
    with pytest.raises(RequestError) as refused:
        parse(body)
    assert refused.value.param == param
