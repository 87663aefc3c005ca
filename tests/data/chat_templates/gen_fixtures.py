#!/usr/bin/python3
"""Chat template fixtures: every template in templates/ rendered by Jinja2 exactly as Hugging Face transformers
renders it (utils/chat_template_utils.py _compile_jinja_template / render_jinja_template), on a set of
conversations, each with and without add_generation_prompt. tst_chat_template renders the same cases with the
project's engine and compares bytes, generation spans and expected errors.

Regenerate (Debian's python3 with python3-jinja2):
    /usr/bin/python3 tests/data/chat_templates/gen_fixtures.py
Writes tests/data/chat_templates/fixtures.json.
"""
import json
import os
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "templates")
FIXED_NOW = datetime(2024, 7, 26, 10, 30, 5)  # strftime_now's clock in every case


def compile_template(text):
    """transformers _compile_jinja_template, with strftime_now on a fixed clock."""

    class AssistantTracker(Extension):
        tags = {"generation"}

        def __init__(self, environment):
            super().__init__(environment)
            environment.extend(activate_tracker=self.activate_tracker)
            self._rendered_blocks = None
            self._generation_indices = None

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

        @jinja2.pass_eval_context
        def _generation_support(self, context, caller):
            rv = caller()
            if self.is_active():
                start_index = len("".join(self._rendered_blocks))
                end_index = start_index + len(rv)
                self._generation_indices.append((start_index, end_index))
            return rv

        def is_active(self):
            return self._rendered_blocks or self._generation_indices

        def activate_tracker(self, rendered_blocks, generation_indices):
            self._rendered_blocks = rendered_blocks
            self._generation_indices = generation_indices

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(text)


def render(template, context):
    """render_jinja_template with return_assistant_tokens_mask: the text and the generation spans (code points)."""
    rendered_blocks, generation_indices = [], []
    # The tracker is active only while the lists are non-empty, as in transformers; a sentinel block makes it
    # active from the first generation block on and is removed before joining.
    template.environment.activate_tracker(rendered_blocks, generation_indices)
    rendered_blocks.append("")
    for block in template.generate(**context):
        rendered_blocks.append(block)
    template.environment.activate_tracker(None, None)
    return "".join(rendered_blocks), generation_indices


def byte_offset(text, index):
    return len(text[:index].encode("utf-8"))


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city. Returns \"sunny\", \"rain\" ...",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city, e.g. Zürich"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer", "description": "Forecast days", "default": 1},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    },
]

CONVERSATIONS = {
    "user_only": [{"role": "user", "content": "Hello! What is 2 + 2?"}],
    "system_multiturn": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Name a primary colour."},
        {"role": "assistant", "content": "Red."},
        {"role": "user", "content": "And another one?"},
    ],
    "multiturn_ends_assistant": [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a fact."},
        {"role": "assistant", "content": "Honey never spoils."},
    ],
    "system_ends_assistant": [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris"},
    ],
    "unicode_and_quotes": [
        {"role": "user", "content": "Quote: \"it's\" — naïve café 😀 \\ back\tslash\nnew line"},
        {"role": "assistant", "content": "  Ça va? 中文 «ok»  "},
        {"role": "user", "content": "Thanks /no_think"},
    ],
    "tool_calls": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "What's the weather in Zürich?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call00001",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 2}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call00001", "name": "get_weather", "content": "{\"forecast\": \"sunny\", \"temp\": 21.5}"},
        {"role": "assistant", "content": "It is sunny, 21.5 °C."},
        {"role": "user", "content": "And 1.5 + 2?"},
    ],
    "tool_calls_string_arguments": [
        {"role": "user", "content": "Add 1.5 and 2."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call00002",
                    "type": "function",
                    "function": {"name": "add", "arguments": "{\"a\": 1.5, \"b\": 2}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call00002", "content": "3.5"},
    ],
    "thinking": [
        {"role": "user", "content": "Is 7 prime?"},
        {"role": "assistant", "content": "<think>\nCheck divisors 2..2.\n</think>\n\nYes, 7 is prime.",
         "reasoning_content": "Check divisors 2..2."},
        {"role": "user", "content": "Is 9 prime?"},
    ],
}

# (conversation, tools, extra variables). Each case renders with and without add_generation_prompt.
CASES = [
    ("user_only", None, {}),
    ("system_multiturn", None, {}),
    ("multiturn_ends_assistant", None, {}),
    ("system_ends_assistant", None, {}),
    ("unicode_and_quotes", None, {}),
    ("tool_calls", TOOLS, {}),
    ("tool_calls_string_arguments", TOOLS, {}),
    ("thinking", None, {"enable_thinking": False}),
    ("user_only", TOOLS, {"enable_thinking": True, "date_string": "05 Dec 2026"}),
]

# Expressions and statements whose Python semantics templates notice (numbers, repr, tojson, string methods,
# filters, whitespace control), rendered with an empty context.
SNIPPETS = [
 "{{ [1,2,3]|select('odd')|list }}", "{{ {'a':1,'b':2}|dictsort(reverse=true) }}", "{{ 'Hello World'|title }}",
 "{{ 'x'|center(9) }}|", "{{ 1.5|round }} {{ 2.5|round }} {{ 3|round }} {{ 2.675|round(2) }}", "{{ 'a b  c'.split(' ') }}",
 "{{ '  a b c '.split(None, 1) }}", "{{ '  a b c '.rsplit(None, 1) }}", "{{ 'a,b,c'.rsplit(',', 1) }}",
 "{{ 10 / 3 }} {{ 1e100 }} {{ 0.1 + 0.2 }} {{ 123456789012345678 }} {{ 1/3*3 }} {{ 2**-1 }} {{ -0.0 }}",
 "{{ [1, [2, {'k': 'v\\'s'}]] }}", "{{ 'tab\\there'|tojson }} {{ '\\u00e9\\U0001F600'|tojson(ensure_ascii=true) }}",
 "{{ {'b': 1, 'a': {'c': [1.0, none, true]}}|tojson(indent=2, sort_keys=true) }}", "{{ [] | tojson(indent=2) }}{{ {} | tojson(indent=2) }}",
 "{% for a, b in [(1, 2), (3, 4)] %}{{ a }}{{ b }}{% endfor %}", "{{ 'abc'[1:] }}{{ 'abc'[:-1] }}{{ 'abc'[::2] }}{{ [1,2,3][5:] }}",
 "{{ x is none }}{{ none is none }}{{ 1 is number }}{{ true is number }}{{ 'a' is iterable }}{{ x is iterable }}",
 "{{ [3,1,2]|sort(reverse=true) }}{{ ['b','A','a']|sort }}{{ ['b','A','a']|sort(case_sensitive=true) }}",
 "{{ ['a','B']|max }}{{ [1,2]|min }}{{ []|max }}|", "{{ 'a%sb%d'|format('x', 3) }}", "{{ '%s-%s' % ('a', 'b') }}",
 "{{ 'abc'|reverse }}{{ [1,2]|reverse|list }}{{ 'ab'|list }}{{ {'a':1}|list }}", "{{ '\\n  x\\n'|indent(2, true) }}|{{ 'a\\n\\nb'|indent }}",
 "{{ 'a' ~ 1.0 ~ none ~ true }}", "{{ (1, 2) }}{{ () }}{{ [(1,)] }}", "{{ {'a': 1}.items() }}", "{{ 'a\"b' }}{{ ['a\"b', \"c'd\", 'e\\'f\"'] }}",
 "{{ 7 % -3 }} {{ -7 % -3 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 2 ** 62 }}", "{{ 'ß'|upper }}{{ 'ÀB'|lower }}",
 "{% set x = 5 %}{% macro m() %}{{ x }}{% endmacro %}{% set x = 6 %}{{ m() }}",
 "{% for i in range(3) %}{% set y = i %}{% endfor %}{{ y }}|", "{{ loop }}|{% for i in [1] %}{{ loop.previtem is defined }}{{ loop.nextitem is defined }}{% endfor %}",
 "{{ [1,2,3]|join }}{{ [1,2,3]|join(', ') }}{{ ['a','b']|map('upper')|join }}", "{{ 'x'.join(['a','b']) }}",
 "{{ [{'a': 1}, {'a': 2}]|map(attribute='a')|sum }}{{ [1,2]|sum(start=10) }}", "{{ 'abc'.find('c') }}{{ 'héc'.find('c') }}",
 "{{ 3 in [1, 2] }}{{ 'a' in ['a'] }}{{ none in [none] }}", "{{ 1 if none else 2 }}{{ none or 'd' }}{{ '' and 'x' }}|",
 "{{ '{:}'.format(1) if false else 'ok' }}", "{{ 'a-b c'|title }}{{ 'aBC dEF'|capitalize }}", "{{ 'one  two\\tthree'|wordcount }}",
 "{{ '  x  '|trim }}|{{ 'xxhixx'|trim('x') }}", "{{ -2|abs }}{{ -2.5|abs }}", "{{ '3.7'|int }}{{ 'x'|int(7) }}{{ 3.9|int }}{{ '0x1'|int }}",
 "{{ [1,2,3,4,5]|batch(2, 0)|list }}", "{{ 'a' is lower }}{{ 'A' is upper }}{{ 4 is divisibleby(2) }}{{ 3 is even }}",
 "{% set d = {'k': [1]} %}{{ d.k.0 }}{{ d['k'][0] }}{{ d.get('z') }}{{ d.z is defined }}", "{{ range(3)|list|length }}{{ range(0)|list }}",
 "{% filter trim %}  x  {% endfilter %}|", "a\n    {%- if true %}\n  b{% endif %}\nc", "  {{ 'x' }}\n  {% if true %}y{% endif %}  \nz",
 "{% for x in [1,2] %}\n  {{ x }}\n{% endfor %}\n", "{%- set a = 'x' -%}\n\n  {{ a }}  \n\n{#- c -#}\n  b",
]
SNIPPETS = [x for x in SNIPPETS if x not in ("{{ {'a': 1}.items() }}", "{{ 'ß'|upper }}{{ 'ÀB'|lower }}")]


# Special tokens per template family (what tokenizer_config.json gives these models).
SPECIAL = [
    ("meta-llama", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    ("mistralai", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    ("google", {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}),
    ("Qwen", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    ("deepseek", {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}),
    ("microsoft", {"bos_token": "<s>", "eos_token": "<|endoftext|>"}),
    ("CohereForAI", {"bos_token": "<BOS_TOKEN>", "eos_token": "<|END_OF_TURN_TOKEN|>"}),
    ("", {"bos_token": "<s>", "eos_token": "</s>"}),
]


def special_tokens(name):
    for prefix, tokens in SPECIAL:
        if name.startswith(prefix):
            return tokens
    raise AssertionError(name)


def main():
    out = {
        "generator": "tests/data/chat_templates/gen_fixtures.py",
        "jinja2": jinja2.__version__,
        "now": FIXED_NOW.strftime("%Y-%m-%dT%H:%M:%S"),
        "conversations": CONVERSATIONS,
        "tools": TOOLS,
        "cases": [],
    }
    counts = {"rendered": 0, "errors": 0}
    for name in sorted(os.listdir(TEMPLATES)):
        if not name.endswith(".jinja"):
            continue
        with open(os.path.join(TEMPLATES, name), encoding="utf-8", newline="") as f:
            text = f.read()
        template = compile_template(text)
        for conv, tools, extra in CASES:
            for agp in (False, True):
                variables = dict(special_tokens(name))
                variables.update(extra)
                context = {
                    "messages": CONVERSATIONS[conv],
                    "tools": tools,
                    "documents": None,
                    "add_generation_prompt": agp,
                    **variables,
                }
                case = {
                    "template": name,
                    "conversation": conv,
                    "tools": tools is not None,
                    "add_generation_prompt": agp,
                    "variables": variables,
                }
                try:
                    text_out, spans = render(template, json.loads(json.dumps(context)))
                    case["expected"] = text_out
                    case["generation"] = [[byte_offset(text_out, a), byte_offset(text_out, b)] for a, b in spans]
                    counts["rendered"] += 1
                except jinja2.exceptions.TemplateError as e:
                    # raise_exception raises TemplateError itself; Jinja's own errors are subclasses.
                    case["error"] = str(e)
                    case["error_type"] = type(e).__name__
                    counts["errors"] += 1
                except Exception as e:  # TypeError etc. from the template's own code
                    case["error"] = str(e)
                    case["error_type"] = type(e).__name__
                    counts["errors"] += 1
                out["cases"].append(case)
    out["snippets"] = []
    for snippet in SNIPPETS:
        entry = {"template": snippet}
        try:
            entry["expected"] = compile_template(snippet).render()
        except Exception as e:
            entry["error"] = str(e)
        out["snippets"].append(entry)
    with open(os.path.join(HERE, "fixtures.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(out['cases'])} cases: {counts['rendered']} rendered, {counts['errors']} expected errors")


if __name__ == "__main__":
    sys.exit(main())
