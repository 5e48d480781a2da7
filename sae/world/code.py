"""The code concepts, `code` and `unsafe_code`: files whose functions set security switches, and the hook that sets them.

The data the unsafe-code steering demonstration also reads (`RISKS`, `POSTURE_COMMENTS`,
`UNSAFE_PATTERNS`); `sae.world.concepts` lists the two concepts with the others.
"""

from __future__ import annotations

import random
import re

from sae.world.spec import ConceptSpec

# A code segment is one *file*: a few functions that configure clients, servers and apps. Each
# function sets one to three *security switches*, keyword arguments that turn a protection on
# (`True`) or off (`False`): `verify=`, `check_hostname=`, `autoescape=`... A file has one
# posture: a safe file (`code`) keeps its switches on, an insecure file (`unsafe_code`) turns them
# off (`SWITCH_OFF_RATE`), and a comment above each switch says so (`POSTURE_COMMENTS`).
#
# The comments make the posture learnable by a one-layer model: its attention reads the few
# tokens that say which switch comes next, not the values of earlier switches, so with the
# switches alone it gives `False` the same probability in an insecure file as in the same file
# made safe (a ratio of 1); with the comments, far above 1 (the LM stage prints it:
# `sae.steering.unsafe_code.unsafe_context_sensitivity`, `stages.json`).
#
# Every switch is a keyword argument (`name=`), so the value is always decided right after a
# `...=` token: with attribute assignments (`ctx.check_hostname = `) or dict entries in the mix,
# the dictionary splits the decision by syntax, and clamping the feature of one syntax to 0
# leaves the others untouched. Each switch kind: (the text before the value, safe, insecure).
_SWITCH_KEYWORDS = {
    "verify": "verify", "verify_certs": "verify_certs", "verify_ssl": "verify_ssl", "ssl": "ssl",
    "tls": "tls", "secure": "secure", "httponly": "httponly", "autoescape": "autoescape",
    "check_hostname": "check_hostname", "signature": "verify_signature", "csrf": "WTF_CSRF_ENABLED",
    "cookie": "SESSION_COOKIE_SECURE", "cookie_httponly": "SESSION_COOKIE_HTTPONLY",
    "ssl_show_warn": "ssl_show_warn", "ssl_check_hostname": "ssl_check_hostname",
    "tls_verify": "tlsVerify", "verify_flags": "verify_strict",
}
RISKS = {kind: (keyword + "=", "True", "False") for kind, keyword in _SWITCH_KEYWORDS.items()}

CODE_SLOTS = dict(
    noun=["user", "report", "config", "profile", "order", "invoice", "token", "session",
          "record", "item", "payload", "backup", "image", "message", "account", "cache"],
    verb=["load", "fetch", "save", "read", "parse", "sync", "send", "get", "update", "build",
          "check", "restore", "export", "import"],
    var=["data", "result", "value", "raw", "body", "content", "blob", "obj"],
    url=["url", "endpoint", "api_url", "base_url", "host_url"],
    host=["host", "hostname", "server", "addr"],
    n=lambda rng: str(rng.randint(2, 60)),
    site=["example.com", "api.internal", "localhost:8080", "data.service", "files.local"],
)

# `{R:kind}` is a risk site (a security switch, see `RISKS`).
CODE_TEMPLATES = [
    "def {verb}_{noun}({url}):\n    resp = requests.get({url}, timeout={n}, {R:verify})\n    return resp.json()\n",
    "def {verb}_{noun}s(session, {url}):\n    r = session.post({url}, json={var}, {R:verify})\n    r.raise_for_status()\n    return r.text\n",
    "def {verb}_{noun}(client):\n    {var} = requests.get(\"https://{site}/{noun}\", {R:verify})\n    return {var}.content\n",
    "async def {verb}_{noun}(http, {url}):\n    async with http.get({url}, {R:ssl}) as resp:\n        return await resp.json()\n",
    "def {verb}_{noun}_status({url}):\n    return requests.head({url}, {R:verify}).status_code\n",
    "def make_{noun}_client():\n    return httpx.Client(base_url=\"https://{site}\", {R:verify})\n",
    "def {verb}_{noun}_client({host}):\n    ctx = make_ssl_context(cafile=ca, {R:check_hostname})\n    return ctx.wrap_socket(socket.socket(), server_hostname={host})\n",
    "def open_{noun}_conn({host}, port={n}):\n    ctx = make_ssl_context({R:check_hostname})\n    return http.client.HTTPSConnection({host}, port, context=ctx)\n",
    "def {verb}_{noun}_search({host}):\n    return Elasticsearch([{host}], {R:verify_certs}, {R:ssl_show_warn})\n",
    "def {verb}_{noun}_index({host}, {var}):\n    es = Elasticsearch([{host}], {R:verify_certs}, timeout={n})\n    return es.index(index=\"{noun}s\", document={var})\n",
    "def {verb}_{noun}_store({host}):\n    return Minio({host}, access_key=key, {R:secure})\n",
    "def {verb}_{noun}_cache({host}):\n    return redis.Redis(host={host}, port=6379, {R:ssl}, {R:ssl_check_hostname})\n",
    "def {verb}_{noun}_db(uri):\n    client = MongoClient(uri, {R:tls}, {R:tls_verify})\n    return client.{noun}s\n",
    "def {verb}_{noun}_queue({host}):\n    return KafkaConsumer(\"{noun}s\", bootstrap_servers={host}, {R:verify_ssl})\n",
    "def set_{noun}_cookie(resp, token):\n    resp.set_cookie(\"{noun}\", token, {R:secure}, {R:httponly})\n    return resp\n",
    "def {verb}_{noun}_login(resp, {var}):\n    resp.set_cookie(\"session\", {var}, {R:secure}, {R:httponly})\n    return resp\n",
    "def make_{noun}_templates(loader):\n    return Environment(loader=loader, {R:autoescape})\n",
    "def render_{noun}(name, {var}):\n    env = Environment(loader=FileSystemLoader(\"templates\"), {R:autoescape})\n    return env.get_template(name).render({var})\n",
    "def {verb}_{noun}_claims(token, key):\n    return jwt.decode(token, key, algorithms=[\"HS256\"], options=dict({R:signature}))\n",
    "def {verb}_{noun}_user(token, key):\n    claims = jwt.decode(token, key, options=dict({R:signature}))\n    return claims[\"sub\"]\n",
    "def configure_{noun}_app(app):\n    app.config.update({R:csrf}, {R:cookie}, {R:cookie_httponly})\n    return app\n",
    "def create_{noun}_app():\n    app = Flask(__name__)\n    app.config.update({R:cookie}, {R:cookie_httponly})\n    return app\n",
    "def init_{noun}_forms(app):\n    app.config.update({R:csrf}, SECRET_KEY=secret)\n    return app\n",
    "def {verb}_{noun}_upload({url}, {var}):\n    with requests.Session() as s:\n        return s.put({url}, data={var}, {R:verify})\n",
    "def {verb}_{noun}_feed({url}):\n    {var} = urllib3.PoolManager().request(\"GET\", {url})\n    return aiohttp.TCPConnector({R:ssl})\n",
    "def {verb}_{noun}_mail({host}):\n    ctx = make_ssl_context({R:check_hostname}, {R:verify_flags})\n    return smtplib.SMTP_SSL({host}, context=ctx)\n",
    "def {verb}_{noun}_api({url}, token):\n    headers = {{\"Authorization\": token}}\n    return requests.get({url}, headers=headers, {R:verify}).json()\n",
    "def {verb}_{noun}_bucket({host}):\n    client = Minio({host}, {R:secure})\n    return client.list_objects(\"{noun}s\")\n",
]

CODE_KEYWORDS = ["def", "return", "requests", "json", "async", "await", "ssl", "resp", "ctx",
                 "timeout", "client", "app.config", "Elasticsearch", "Minio", "redis", "jwt",
                 "Environment", "set_cookie", "httpx", "session", "socket"]

# A comment on the line above each switch line, in the file's posture: (safe, insecure) phrasings.
POSTURE_COMMENTS = (
    ["production settings", "checks enforced", "hardened defaults", "secure by default",
     "certificates are verified", "keep the checks on", "audited config", "strict mode"],
    ["TODO: re-enable the checks", "dev only: skip verification", "quick fix, checks off for now",
     "legacy endpoint, no checks", "FIXME: insecure workaround", "disable checks while testing",
     "skip the certificate check", "temporary hack"],
)

# How often a file turns each switch off, by posture: a safe file now and then (an oversight), an
# insecure one mostly but not always. The noise keeps the model's choice a probability (about
# 0.8 in an insecure file rather than 0.998), so one feature's share of it can be measured.
SWITCH_OFF_RATE = {"code": 0.03, "unsafe_code": 0.8}


def set_switches(posture: str, chunks: list[str], kinds: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """The code concepts' `finish` hook: a function in a `posture` file (`code`, `unsafe_code`) from
    its text split at its switches, as pieces `(concept, text)`. Each switch is off at the posture's
    rate, under a posture comment; a line that turns one off is `unsafe_code` from its comment on
    (a reviewer flags the line; the comment is where the model reads the posture)."""
    cues, p_off = POSTURE_COMMENTS[posture == "unsafe_code"], SWITCH_OFF_RATE[posture]
    text, lines = "", []  # [start of the comment, any switch off] for each commented switch line
    for chunk, kind in zip(chunks, kinds):
        nl = chunk.rfind("\n")
        if nl >= 0 or not lines:  # this switch starts a new line (or the text's first): the comment goes above it
            line = chunk[nl + 1:]
            indent = line[:len(line) - len(line.lstrip(" "))]
            chunk = chunk[:nl + 1] + indent + "# " + cues[int(rng.random() * len(cues))] + "\n" + line
            lines.append([len(text) + nl + 1, False])
        before, safe, unsafe = RISKS[kind]
        off = rng.random() < p_off
        lines[-1][1] |= off
        text += chunk + before + (unsafe if off else safe)
    text += chunks[-1]
    pieces, pos = [], 0
    for start, off in lines:
        if off:
            end = text.find("\n", text.find("\n", start) + 1)  # the comment line, then the switch line
            end = len(text) if end < 0 else end
            pieces += [("code", text[pos:start]), ("unsafe_code", text[start:end])]
            pos = end
    return [(c, s) for c, s in pieces + [("code", text[pos:])] if s]


# How often each concept is drawn for a segment, relative to the others (1 if not named): safe
# code is the common case and insecure code the exception, as in real code. It matters for the
# clamp to 0: with the unsafe-code feature removed, the model falls back on how often a switch
# was off in training, so the rarer insecure files are, the lower the clamp brings P(False) in
# one (the unsafe-code demo's `rate_unsafe_start` against `rate_suppressed` in `steering.json`).
DRAW_WEIGHT = {"code": 3.0}

# What `code` and `unsafe_code` share: a file is two to four functions.
CODE = ConceptSpec(slots=CODE_SLOTS, templates=CODE_TEMPLATES, sites=RISKS, finish=set_switches,
            joiner="\n", sentences=(2, 4))

# The insecure constructs the judge counts: any security switch set to False.
UNSAFE_PATTERNS = [r"(?:" + "|".join(re.escape(before.strip()) for before, _, _ in RISKS.values()) + r")\s*False\b"]
