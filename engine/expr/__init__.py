"""Expressions: jmespath plus the engine's registered functions, compiled once at load time.

    expr = compile_expression("trim(Bezeichnung)", code_tables=tenant.code_tables)
    read = expr.bind(column_names)      # a function over tuple rows in that column order
    read(row)                           # or expr.evaluate({"Bezeichnung": " Haus A "})

The semantics are jmespath's (`jmespath.search(text, record, options=jmespath_options(...))`);
plain column references and most expressions run as compiled closures, without a search per
row. The functions are listed in FUNCTIONS and documented in docs/functions.md.
"""
from engine.expr._expr import Expr, ExprError, compile_expression
from engine.expr.emails import EmailInfo, analyze_email, normalize_email
from engine.expr.functions import FUNCTIONS, Function, jmespath_options
from engine.expr.phones import PhoneInfo, analyze_phone, normalize_phone

__all__ = [
    "Expr", "ExprError", "compile_expression", "FUNCTIONS", "Function", "jmespath_options",
    "EmailInfo", "analyze_email", "normalize_email", "PhoneInfo", "analyze_phone", "normalize_phone",
]
