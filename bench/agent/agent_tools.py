# agent_tools.py — the toy agent's two tools as smolagents Tools (web_search over the local corpus, python run in a
# subprocess), shared by the data generator (so training transcripts show their exact schemas and outputs) and the demo.
import os
import re
import subprocess
import sys

from smolagents import Tool

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus import NOTES  # noqa: E402


def words(s):
    return set(re.findall(r"[a-z0-9]+", s.lower()))


STOP = {"the", "of", "key", "features", "feature", "facts", "about", "and", "a", "an", "main", "overview", "what",
        "is", "are", "notes", "info", "information", "summary", "highlights"}


def find_topic(query, notes=NOTES):
    """The topic whose name shares the most words with the query (ties: the shorter name), or None."""
    q = words(query) - STOP
    best, best_score = None, 0
    for name in sorted(notes, key=len):
        score = len(q & words(name))
        if score > best_score:
            best, best_score = name, score
    return best


def search_result(query, notes=NOTES):
    """What web_search returns: the matching topic's notes as "- Heading: fact" lines, or a not-found message."""
    topic = find_topic(query, notes)
    if topic is None:
        return f"No results found for '{query}'. Try a shorter query with the topic's name."
    lines = "\n".join(f"- {f}" for f in notes[topic])
    return f"## Search results\n\n### {topic}\n{lines}"


class WebSearchTool(Tool):
    name = "web_search"
    description = "Searches the web for your query and returns the notes of the best matching page."
    inputs = {"query": {"type": "string", "description": "The search query."}}
    output_type = "string"

    def __init__(self, notes=None, **kwargs):
        self.notes = notes if notes is not None else NOTES
        super().__init__(**kwargs)

    def forward(self, query: str) -> str:
        return search_result(query, self.notes)


def run_python(code, workdir, timeout=60):
    """What the python tool returns: the code's standard output, or its last error line."""
    try:
        r = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "Error: the code ran for too long"
    if r.returncode != 0:
        last = [l for l in r.stderr.strip().splitlines() if l.strip()]
        return "Error: " + (last[-1] if last else f"exit code {r.returncode}")
    return r.stdout.strip() or "The code ran without printing anything."


class PythonTool(Tool):
    name = "python"
    description = ("Runs Python code and returns what it prints. python-pptx is installed: "
                   "use it to write PowerPoint decks.")
    inputs = {"code": {"type": "string", "description": "The Python code to run."}}
    output_type = "string"

    def __init__(self, workdir=".", **kwargs):
        self.workdir = workdir
        super().__init__(**kwargs)

    def forward(self, code: str) -> str:
        return run_python(code, self.workdir)


# smolagents' default ToolCallingAgent system prompt is about a thousand tokens of examples with other tools; the toy
# agent is trained with this short one (passed through smolagents' own prompt_templates argument) instead.
SYSTEM_PROMPT = ("You are an agent that solves tasks with tool calls. Search the web with web_search, run code with "
                 "python (python-pptx writes slides), and finish with final_answer. Copy facts exactly as found.")


def prompt_templates():
    """smolagents' ToolCallingAgent templates with the short system prompt."""
    import importlib.resources

    import yaml
    text = importlib.resources.files("smolagents.prompts").joinpath("toolcalling_agent.yaml").read_text()
    templates = yaml.safe_load(text)
    templates["system_prompt"] = SYSTEM_PROMPT
    return templates


def make_agent(model, workdir, notes=None, max_steps=6, **kwargs):
    """The toy agent: a smolagents ToolCallingAgent with web_search over the corpus and python in workdir."""
    from smolagents import ToolCallingAgent
    return ToolCallingAgent(tools=[WebSearchTool(notes), PythonTool(workdir=workdir)], model=model,
                            prompt_templates=prompt_templates(), max_steps=max_steps, **kwargs)
