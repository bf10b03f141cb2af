"""The public API (``livetrain_widgets.__all__``) is documented and typed: every name, every public
method and property has a docstring, and every public function or method annotates its parameters and
return value. A newcomer reads ``help(LiveSession)``; this keeps that worth reading."""

from __future__ import annotations

import inspect

import livetrain_widgets as lw

PUBLIC = [n for n in lw.__all__ if not n.startswith("__")]


def _members(cls: type) -> list[tuple[str, object]]:
    return [(m, v) for m, v in vars(cls).items() if not m.startswith("_") and (callable(v) or isinstance(v, property))]


def test_every_public_name_and_member_has_a_docstring() -> None:
    missing = [n for n in PUBLIC if not inspect.getdoc(getattr(lw, n))]
    for n in PUBLIC:
        obj = getattr(lw, n)
        if inspect.isclass(obj):
            for m, v in _members(obj):
                f = v.fget if isinstance(v, property) else v
                if not (getattr(f, "__doc__", None) or "").strip():
                    missing.append(f"{n}.{m}")
    assert not missing, f"no docstring: {missing}"


def test_public_functions_and_methods_are_type_hinted() -> None:
    def unannotated(qual: str, f: object) -> list[str]:
        f = inspect.unwrap(getattr(f, "__func__", f))
        if not inspect.isfunction(f):
            return []
        sig = inspect.signature(f)
        bad = [p.name for p in sig.parameters.values()
               if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
        if sig.return_annotation is inspect.Signature.empty and f.__name__ != "__init__":
            bad.append("return")
        return [f"{qual}({', '.join(bad)})"] if bad else []

    missing: list[str] = []
    for n in PUBLIC:
        obj = getattr(lw, n)
        if inspect.isclass(obj):
            missing += unannotated(f"{n}.__init__", vars(obj).get("__init__"))
            for m, v in _members(obj):
                missing += unannotated(f"{n}.{m}", v.fget if isinstance(v, property) else v)
        else:
            missing += unannotated(n, obj)
    assert not missing, f"not type-hinted: {missing}"
