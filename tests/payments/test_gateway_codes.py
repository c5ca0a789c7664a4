"""One vocabulary of gateway errors: what every gateway can raise is in ``GATEWAY_ERROR_CODES``.

The gateways' source is read (``ast``), not run: a raise site that no other test reaches is
checked too. Every ``GatewayError(...)`` must name its code as a literal of the vocabulary and
carry a message that the catalog extraction finds (a literal, or a helper's parameter that every
caller fills with ``N_("...")``); every ``InvalidSignature(...)`` a code of
``CALLBACK_REFUSAL_CODES``. The doc's table (docs/payments-gateways.md) must say what the code
says. No database and no network.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file

import shanju
from shanju.core.i18n import EXTRACT_KEYWORDS, Msg, translate
from shanju.payments import alipay, wechatpay
from shanju.payments.gateway import CALLBACK_REFUSAL_CODES, GATEWAY_ERROR_CODES, GatewayError
from shanju.payments.providers import InvalidSignature

PACKAGE = Path(shanju.__file__).resolve().parent
REPO = PACKAGE.parent.parent
GATEWAYS = {"wechatpay": Path(wechatpay.__file__), "alipay": Path(alipay.__file__)}
DOC = REPO / "docs" / "payments-gateways.md"
PLACEHOLDER = re.compile(r"%\(\w+\)s")


@dataclass(frozen=True)
class Raise:
    """One ``GatewayError(...)`` or ``InvalidSignature(...)`` in a gateway's source."""

    where: str            # "alipay.py:123"
    code: str | None      # the literal ``code=``; None when absent
    messages: tuple[str, ...]


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _marked(node: ast.expr) -> str | None:
    """The msgid of ``N_("...")``, else None."""
    if isinstance(node, ast.Call) and _name(node.func) == "N_" and len(node.args) == 1:
        return _literal(node.args[0])
    return None


def _raises(path: Path, exception: str) -> list[Raise]:
    """Every call of ``exception`` in ``path``, with its code and the msgids it may carry."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    enclosing: dict[int, ast.FunctionDef] = {}  # node → the innermost function around it

    def visit(node: ast.AST, function: ast.FunctionDef | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, ast.FunctionDef) else function
            if inner is not None:
                enclosing[id(child)] = inner
            visit(child, inner)

    visit(tree, None)
    found: list[Raise] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _name(node.func) == exception):
            continue
        where = f"{path.name}:{node.lineno}"
        code_node = next((k.value for k in node.keywords if k.arg == "code"), None)
        code = None if code_node is None else _literal(code_node)
        assert code_node is None or code is not None, f"{where}: the code is not a literal"
        assert node.args, f"{where}: no message"
        message = node.args[0]
        if (text := _literal(message)) is not None:
            found.append(Raise(where, code, (text,)))
            continue
        # A helper's parameter (``_bill_error(message, …)``): every caller must mark its msgid.
        assert isinstance(message, ast.Name), f"{where}: the message is not a literal or a name"
        helper = enclosing.get(id(node))
        assert helper is not None, f"{where}: the message {message.id} comes from nowhere"
        params = [a.arg for a in helper.args.posonlyargs + helper.args.args]
        assert message.id in params, f"{where}: {message.id} is not a parameter of {helper.name}"
        index = params.index(message.id)
        msgids: list[str] = []
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and _name(call.func) == helper.name):
                continue
            given = (call.args[index] if len(call.args) > index else
                     next((k.value for k in call.keywords if k.arg == message.id), None))
            msgid = None if given is None else _marked(given)
            assert msgid is not None, (
                f"{path.name}:{call.lineno}: {helper.name}'s message is not N_(\"...\")")
            msgids.append(msgid)
        assert msgids, f"{where}: {helper.name} is never called"
        found.append(Raise(where, code, tuple(msgids)))
    return found


def _gateway_errors(name: str) -> list[Raise]:
    return _raises(GATEWAYS[name], "GatewayError")


# --- gateway errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(GATEWAYS))
def test_every_code_a_gateway_can_raise_is_in_the_vocabulary(name: str) -> None:
    raises = _gateway_errors(name)
    assert len(raises) >= 10, "the scan found too few raise sites to be reading the gateway"
    missing = [r.where for r in raises if r.code is None]
    assert missing == [], f"GatewayError without a code: {missing}"
    unknown = {r.where: r.code for r in raises if r.code not in GATEWAY_ERROR_CODES}
    assert unknown == {}


@pytest.mark.parametrize("name", list(GATEWAYS))
def test_the_codes_a_gateway_compares_are_in_the_vocabulary(name: str) -> None:
    # ``exc.code == "payment_order_unknown"`` in a query: a renamed code must not go unnoticed.
    tree = ast.parse(GATEWAYS[name].read_text(encoding="utf-8"))
    compared = {
        value for node in ast.walk(tree) if isinstance(node, ast.Compare)
        and isinstance(node.left, ast.Attribute) and node.left.attr == "code"
        for value in map(_literal, node.comparators) if value is not None}
    assert compared <= set(GATEWAY_ERROR_CODES) | set(CALLBACK_REFUSAL_CODES)


def test_every_code_of_the_vocabulary_is_raised_by_some_gateway() -> None:
    raised = {r.code for name in GATEWAYS for r in _gateway_errors(name)}
    assert set(GATEWAY_ERROR_CODES) - raised == set(), "a code no gateway raises"


def test_retryable_belongs_to_the_code() -> None:
    for code, entry in GATEWAY_ERROR_CODES.items():
        assert code.startswith("payment_") and entry.meaning
        assert isinstance(entry.retryable, bool)
        error = GatewayError("WeChat Pay is busy. Please try again later.", code=code,
                             params={"provider_code": "X"})
        assert (error.code, error.retryable) == (code, entry.retryable)
        assert error.status_code == 502 and error.params == {"provider_code": "X"}
    # What passes with time is retryable; what a person must mend is not.
    assert {code for code, entry in GATEWAY_ERROR_CODES.items() if entry.retryable} == {
        "payment_provider_unreachable", "payment_provider_busy", "payment_refund_unfunded",
        "payment_bill_not_ready"}
    with pytest.raises(ValueError, match="provider_busy"):
        GatewayError("Alipay is busy; try again later.", code="provider_busy")


def test_every_gateway_message_is_extracted_and_translated() -> None:
    msgids = {m for name in GATEWAYS for r in _gateway_errors(name) for m in r.messages}
    assert len(msgids) >= 30
    extracted = {
        message for path in GATEWAYS.values()
        for _line, message, _comments, _context in extract_from_file(
            "python", str(path), keywords=EXTRACT_KEYWORDS)
    }
    assert msgids <= extracted, "a message `python -m shanju.core.i18n` would not see"
    for msgid in msgids:
        chinese = translate("zh_CN", msgid)
        assert chinese != msgid and not chinese.isascii(), f"untranslated: {msgid!r}"
        assert sorted(PLACEHOLDER.findall(chinese)) == sorted(PLACEHOLDER.findall(msgid))


def test_a_gateway_error_reads_in_the_readers_language() -> None:
    with pytest.raises(GatewayError) as caught:
        alipay.parse_trade_bill("#账号：[2088000000000001]\n支付宝交易号,商户订单号\n".encode("gbk"))
    message = caught.value.message
    assert isinstance(message, Msg) and caught.value.code == "payment_bill_malformed"
    assert str(message) == "The bill's line 2 is not its header (no 业务类型)."
    assert translate("zh_CN", message) == "对账单第 2 行不是表头（缺少“业务类型”列）。"
    assert translate("en", message) == str(message)


# --- callback refusals -------------------------------------------------------------------------


def test_every_callback_refusal_is_in_the_vocabulary() -> None:
    assert InvalidSignature.code in CALLBACK_REFUSAL_CODES  # a refusal without code=
    by_gateway = {name: {r.code or InvalidSignature.code
                         for r in _raises(path, "InvalidSignature")}
                  for name, path in GATEWAYS.items()}
    sandbox = {r.code or InvalidSignature.code
               for r in _raises(PACKAGE / "payments" / "providers.py", "InvalidSignature")}
    for codes in (*by_gateway.values(), sandbox):
        assert codes <= set(CALLBACK_REFUSAL_CODES)
    # Both gateways can refuse in each of the four ways.
    assert by_gateway["wechatpay"] == by_gateway["alipay"] == set(CALLBACK_REFUSAL_CODES)


# --- the doc -----------------------------------------------------------------------------------


def _table(text: str, header: str) -> list[list[str]]:
    """The rows of the markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows: list[list[str]] = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def test_the_docs_table_is_the_vocabulary() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = _table(text, "| code | retryable | meaning | WeChat Pay | Alipay |")
    assert {row[0].strip("`"): row[1] for row in rows} == {
        code: "yes" if entry.retryable else "no" for code, entry in GATEWAY_ERROR_CODES.items()}
    assert [row[0].strip("`") for row in rows] == list(GATEWAY_ERROR_CODES)  # the same order
    refusals = _table(text, "| code | meaning |")
    assert [row[0].strip("`") for row in refusals] == list(CALLBACK_REFUSAL_CODES)


@pytest.mark.parametrize("doc", [
    "payments-gateways.md", "payments-wechatpay.md", "payments-alipay.md",
    "adr/0025-wechat-pay-v3-service-provider.md", "adr/0026-alipay-isv.md"])
def test_the_docs_name_only_codes_of_the_vocabulary(doc: str) -> None:
    text = (REPO / "docs" / doc).read_text(encoding="utf-8")
    named = set(re.findall(r"`(payment_[a-z_]+)`", text))
    assert named <= set(GATEWAY_ERROR_CODES)
    if doc != "payments-gateways.md":
        assert "payments-gateways.md" in text  # where the table is
