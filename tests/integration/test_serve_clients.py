"""The agent frameworks people point at `tandem serve`, used unchanged: smolagents (ToolCallingAgent, CodeAgent with
structured outputs), Qwen-Agent (its own function-calling prompt, and use_raw_api) and AutoGen (AssistantAgent on
autogen-ext's OpenAIChatCompletionClient), served with the official Qwen3 chat template.

The model is a tiny random-weight Qwen3 made terse: one hidden dimension of every input embedding is set large, and
the output rows of `"`, `}` and <|im_end|> read it, so those tokens win wherever they are allowed. Constrained
decoding supplies the structure (tool names, keys, brackets) and the model closes every string and object at once
and ends after a call, so each answer finishes within a few dozen tokens instead of running into max_tokens inside
a string. What is checked is the protocol: each framework parses every response without an error, the tool calls it
gets name an offered tool with arguments valid under its schema (jsonschema), tools run, and tool results go back."""
import asyncio
import json
import re
import shutil
import urllib.request

import pytest

jsonschema = pytest.importorskip("jsonschema")
from serve_process import Server  # noqa: E402

MODEL = "untied_gqa1"  # untied: the input and output embeddings can be set apart
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def terse_model(models_dir, out):
    """A copy of MODEL's f32 GGUF whose answers end quickly (see the module's docstring)."""
    gguf = pytest.importorskip("gguf")
    import numpy as np
    src = models_dir / MODEL / "model-f32.gguf"
    shutil.copyfile(src, out)
    reader = gguf.GGUFReader(str(src))
    tokens = json.loads((models_dir / MODEL / "tokenizer.json").read_text())
    ids = dict(tokens["model"]["vocab"], **{a["content"]: a["id"] for a in tokens["added_tokens"]})
    for t in reader.tensors:
        if t.name not in ("token_embd.weight", "output.weight", "output_norm.weight"):
            continue
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        shape = tuple(int(x) for x in reversed(t.shape))  # rows, columns
        w = np.memmap(out, dtype=np.float32, mode="r+", offset=int(t.data_offset), shape=shape)
        if t.name == "token_embd.weight":
            w[:, 0] = 1000.0       # every token carries a dominant, positive dimension 0
        elif t.name == "output_norm.weight":
            w[0] = 1.0
        else:
            w[:, 0] = 0.0
            w[ids['"'], 0], w[ids["}"], 0], w[ids["<|im_end|>"], 0] = 30.0, 20.0, 10.0
        w.flush()
        del w
    return out


@pytest.fixture(scope="module")
def server(tandem_bin, models_dir, qwen3_tokenizer_dir, tmp_path_factory):
    model = terse_model(models_dir, tmp_path_factory.mktemp("model") / "terse.gguf")
    template = tmp_path_factory.mktemp("template") / "qwen3.jinja"
    template.write_text(json.loads((qwen3_tokenizer_dir / "tokenizer_config.json").read_text())["chat_template"])
    srv = Server(tandem_bin, model, tmp_path_factory.mktemp("serve"), "--parallel", "2", "--ctx", "16384",
                 "--chat-template-file", template, "--alias", "tiny-qwen3")
    yield srv.url.rstrip("/")
    srv.stop(check=True)


def running_requests(url):
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        m = re.search(r"^vllm:num_requests_running(?:\{[^}]*\})? (\S+)$", r.read().decode(), re.M)
    return float(m.group(1))


# ---- smolagents ----

def smolagents_model(url, **kwargs):
    smolagents = pytest.importorskip("smolagents")
    return smolagents.OpenAIServerModel(model_id="tiny-qwen3", api_base=url + "/v1", api_key="unused",
                                        temperature=0, max_tokens=256, **kwargs)


def test_smolagents_tool_calling_agent(server):
    smolagents = pytest.importorskip("smolagents")
    calls = []

    @smolagents.tool
    def get_weather(city: str) -> str:
        """Weather of a city.

        Args:
            city: the city's name
        """
        calls.append(city)
        return f"sunny in {city}"

    # With only final_answer offered, tool_choice "required" (which smolagents sends) must end the run at step 1.
    agent = smolagents.ToolCallingAgent(tools=[], model=smolagents_model(server), max_steps=2)
    agent.run("Say hello.")
    steps = [s for s in agent.memory.steps if isinstance(s, smolagents.memory.ActionStep)]
    assert len(steps) == 1 and steps[0].is_final_answer and steps[0].error is None

    agent = smolagents.ToolCallingAgent(tools=[get_weather], model=smolagents_model(server), max_steps=4)
    agent.run("What is the weather in Paris?")
    steps = [s for s in agent.memory.steps if isinstance(s, smolagents.memory.ActionStep)]
    assert steps
    for s in steps:
        # a parsing or tool-call error would mean the server sent something smolagents cannot read
        assert s.error is None or isinstance(s.error, smolagents.utils.AgentMaxStepsError), s.error
        for tc in s.tool_calls or []:
            assert tc.name in ("get_weather", "final_answer")
            if tc.name == "get_weather":
                jsonschema.validate(tc.arguments if isinstance(tc.arguments, dict) else json.loads(tc.arguments),
                                    WEATHER_SCHEMA)
    n_weather = sum(tc.name == "get_weather" for s in steps for tc in s.tool_calls or [])
    assert len(calls) == n_weather  # every call the model made ran, with its arguments
    assert running_requests(server) == 0


def test_smolagents_code_agent_structured_outputs(server):
    smolagents = pytest.importorskip("smolagents")
    agent = smolagents.CodeAgent(tools=[], model=smolagents_model(server), max_steps=2,
                                 use_structured_outputs_internally=True)
    agent.run("Compute 2 + 2.")
    steps = [s for s in agent.memory.steps if isinstance(s, smolagents.memory.ActionStep)]
    assert steps
    for s in steps:
        if isinstance(s.error, smolagents.utils.AgentMaxStepsError):
            continue  # smolagents' own closing step: no model output
        # the JSON answer (thought + code) always parses: code that fails to run is the model's business
        assert s.error is None or not isinstance(s.error, smolagents.utils.AgentParsingError), s.error
        out = json.loads(s.model_output)
        assert set(out) >= {"thought", "code"}


# ---- Qwen-Agent ----

FUNCTIONS = [{"name": "get_weather", "description": "Weather of a city", "parameters": WEATHER_SCHEMA}]


@pytest.mark.parametrize("raw_api", [False, True], ids=["function_prompt", "use_raw_api"])
def test_qwen_agent_function_calling(server, raw_api):
    qwen_agent_llm = pytest.importorskip("qwen_agent.llm")
    cfg = {"model": "tiny-qwen3", "model_server": server + "/v1", "api_key": "EMPTY",
           "generate_cfg": {"temperature": 0, "max_tokens": 256, "use_raw_api": raw_api}}
    llm = qwen_agent_llm.get_chat_model(cfg)
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    responses = None
    for responses in llm.chat(messages=messages, functions=FUNCTIONS, stream=True):  # use_raw_api streams only
        pass
    assert responses and all(r["role"] == "assistant" for r in responses)
    for r in responses:
        fc = r.get("function_call")
        if fc and raw_api:  # the server parsed the call: it must be valid
            assert fc["name"] == "get_weather"
            jsonschema.validate(json.loads(fc["arguments"]), WEATHER_SCHEMA)
    # the conversation goes on with a function result, as Qwen-Agent's agents send it
    messages += responses
    if any(r.get("function_call") for r in responses):
        messages.append({"role": "function", "name": "get_weather", "content": "sunny"})
    follow = llm.chat(messages=messages, functions=FUNCTIONS, stream=True)
    last = None
    for last in follow:
        pass
    assert last and last[-1]["role"] == "assistant"


# ---- AutoGen ----

def autogen_client(url):
    openai_ext = pytest.importorskip("autogen_ext.models.openai")
    return openai_ext.OpenAIChatCompletionClient(
        model="tiny-qwen3", base_url=url + "/v1", api_key="unused", temperature=0, max_tokens=256,
        model_info={"vision": False, "function_calling": True, "json_output": True, "family": "unknown",
                    "structured_output": True})


def test_autogen_tool_call_round_trip(server):
    models = pytest.importorskip("autogen_core.models")
    tools = pytest.importorskip("autogen_core.tools")

    def get_weather(city: str) -> str:
        """Weather of a city."""
        return f"sunny in {city}"

    tool = tools.FunctionTool(get_weather, description="Weather of a city")
    client = autogen_client(server)

    async def run():
        msgs = [models.UserMessage(content="Weather in Paris?", source="user")]
        first = await client.create(msgs, tools=[tool], tool_choice="required")
        assert first.finish_reason == "function_calls" and isinstance(first.content, list) and first.content
        for call in first.content:
            assert call.name == "get_weather"
            jsonschema.validate(json.loads(call.arguments), WEATHER_SCHEMA)
        # AutoGen sends this assistant turn back with content null and tool_calls
        msgs.append(models.AssistantMessage(content=first.content, source="assistant"))
        msgs.append(models.FunctionExecutionResultMessage(content=[
            models.FunctionExecutionResult(call_id=c.id, content=get_weather(**json.loads(c.arguments)),
                                           name=c.name, is_error=False) for c in first.content]))
        second = await client.create(msgs, tools=[tool], tool_choice="none")
        assert isinstance(second.content, str) and second.finish_reason in ("stop", "length")
        assert second.usage.prompt_tokens > first.usage.prompt_tokens
        await client.close()

    asyncio.run(run())


def test_autogen_assistant_agent_run(server):
    agents = pytest.importorskip("autogen_agentchat.agents")
    calls = []

    def get_weather(city: str) -> str:
        """Weather of a city."""
        calls.append(city)
        return f"sunny in {city}"

    async def run():
        client = autogen_client(server)
        agent = agents.AssistantAgent("assistant", model_client=client, tools=[get_weather],
                                      reflect_on_tool_use=True)
        result = await agent.run(task="What is the weather in Paris?")
        await client.close()
        return result

    result = asyncio.run(run())
    kinds = [type(m).__name__ for m in result.messages]
    assert kinds[0] == "TextMessage" and kinds[-1] in ("TextMessage", "ToolCallSummaryMessage")
    requested = [c for m in result.messages if type(m).__name__ == "ToolCallRequestEvent" for c in m.content]
    for c in requested:
        assert c.name == "get_weather"
        jsonschema.validate(json.loads(c.arguments), WEATHER_SCHEMA)
    assert len(calls) == len(requested)
