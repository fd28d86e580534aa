"""Product code runs stock Django: it reads and writes no private member (a leading underscore) of
Django or of a library. Names the project defines itself are its own business; a few members of
Django and simple-history that their documentation offers as the way to do something are listed
with where that is said."""

import ast
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
OUT_OF_SCOPE = {"tests", "bench", ".venv", "node_modules", "staticfiles", "media"}

# Documented public API despite the underscore.
DOCUMENTED = {
    "_meta": "Django's Model _meta API (docs: ref/models/meta)",
    "_default_manager": "Django's Model._default_manager (docs: topics/db/managers, 'Default managers')",
    "_base_manager": "Django's Model._base_manager (docs: topics/db/managers, 'Base managers')",
    "_asdict": "collections.namedtuple's public method",
}
# The project's own cache on an object it does not define (a request's user).
OURS_ON_OTHER_OBJECTS = {"_role_names"}
# simple-history's documented way to name the user and reason of a save, used in one place only.
DOCUMENTED_IN = {
    ("core/history.py", "_history_user"), ("core/history.py", "_change_reason"),
}


def product_files() -> list[Path]:
    return sorted(
        path for path in ROOT.rglob("*.py")
        if not (set(path.relative_to(ROOT).parts[:-1]) & OUT_OF_SCOPE) and "migrations" not in path.parts
    )


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def own_names(files: list[Path]) -> set[str]:
    """Every underscored name the project defines: functions, classes, attributes and variables."""
    names = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and isinstance(
                    node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return {name for name in names if private(name)}


def test_no_private_member_of_django_or_a_library_is_used():
    files = product_files()
    ours = own_names(files)
    offenders = []
    for path in files:
        relative = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                offenders += [f"{relative}:{node.lineno} imports {alias.name} from {node.module}"
                              for alias in node.names if private(alias.name) and alias.name not in ours]
                continue
            else:
                continue
            allowed = ours | OURS_ON_OTHER_OBJECTS | set(DOCUMENTED)
            if not private(name) or name in allowed or (relative, name) in DOCUMENTED_IN:
                continue
            offenders.append(f"{relative}:{node.lineno} .{name}")
    assert offenders == []


def test_the_check_sees_what_it_looks_for(tmp_path):
    """The scan itself: a private member of a library is caught, the project's own names are not."""
    sample = ast.parse("connection._savepoint_commit(sid)\nself._mine = 1\nself._mine\n")
    found = [n.attr for n in ast.walk(sample) if isinstance(n, ast.Attribute) and private(n.attr)]
    assert sorted(found) == ["_mine", "_mine", "_savepoint_commit"]
    assert "_savepoint_commit" not in own_names([_write(tmp_path, "self._mine = 1\n")])


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "sample.py"
    path.write_text(text)
    return path
