"""The `cortexlens` command: check params, query the store by SQL, list a model's hook points, compare a
run's dvc.lock and metrics with git's."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cortexlens.errors import CortexLensError


def _store_dir(args: argparse.Namespace) -> Path:
    """--store wins; else paths.store of --params (default params.yaml) when it exists; else data/store."""
    if args.store:
        return Path(args.store)
    params = Path(args.params)
    if params.is_file():
        # Only paths.store is needed; `cortexlens check` is where the whole file is validated.
        from cortexlens.config.yaml_io import read_yaml

        store = (read_yaml(params).get("paths") or {}).get("store", "data/store")
        return params.resolve().parent / store
    return Path("data/store")


def cmd_check(args: argparse.Namespace) -> int:
    from cortexlens.config import load_study

    study = load_study(args.path)
    p = study.params
    print(f"{args.path}: OK")
    for name in p.models:
        used = p.extract is not None and name in p.extract.models
        if used:
            info = study.model_info(name)
            family = info.family.name if info.family else info.config.model_type
            points = len(study.hook_points(name))
            print(f"  model {name}: {family}, {info.n_layers} layers, {points} hook points to extract")
        else:
            print(f"  model {name}: {p.models[name].source} (not extracted)")
    for name, spec in p.datasets.items():
        print(f"  dataset {name}: {spec.kind}")
    from cortexlens.plugins import plugins

    for package, plugin in plugins().items():  # analysis sections, validated like the core ones
        for section in plugin.sections:
            if getattr(p, section, None) is not None:
                print(f"  analysis {section} (cortexlens/{package}): OK")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from cortexlens.output import FORMATS
    from cortexlens.store.sql import query

    result = query(_store_dir(args), args.query)
    print(FORMATS[args.format](result.columns, result.rows))
    return 0


def cmd_hooks(args: argparse.Namespace) -> int:
    from cortexlens.config import load_study
    from cortexlens.models.families import hook_width
    from cortexlens.models.hooks import HookPoint

    study = load_study(args.params)
    if args.model not in study.params.models:
        raise CortexLensError(f"model: unknown model {args.model!r} (defined in models: "
                              f"{', '.join(study.params.models) or 'none'})")
    info = study.model_info(args.model)
    if info.family is None or info.dims is None:
        print(f"{args.model}: {info.config.model_type!r} has no canonical hooks; use module:<path> with one of:")
        for name in sorted(info.module_names):
            print(f"  module:{name}")
        return 0
    d = info.dims
    print(f"{args.model}: {info.family.name}, {d.n_layers} layers, d_model={d.d_model}, n_heads={d.n_heads}, "
          f"d_head={d.d_head}, d_mlp={d.d_mlp}")
    for layer in range(d.n_layers):
        for hook in info.hooks:
            print(f"  {HookPoint(hook, layer).name:<32} {hook:<11} width {hook_width(hook, d)}")
    return 0


def cmd_lock_diff(args: argparse.Namespace) -> int:
    from cortexlens.lockdiff import diff_worktree, report

    diff = diff_worktree(Path(args.repo), args.rev)
    print("\n".join(report(diff)))
    if diff.out_of_step:
        return 1
    return 1 if args.strict and not diff.identical else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cortexlens", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate a params file (exit 2 and one line per problem if invalid)")
    check.add_argument("path", nargs="?", default="params.yaml")
    check.set_defaults(func=cmd_check)

    sql = sub.add_parser("sql", help="run a read-only SQL query over the store")
    sql.add_argument("query")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.add_argument("--store", help="store directory (default: paths.store of --params)")
    sql.add_argument("--params", default="params.yaml")
    sql.set_defaults(func=cmd_sql)

    hooks = sub.add_parser("hooks", help="list the hook points of a model named in params.yaml")
    hooks.add_argument("model")
    hooks.add_argument("--params", default="params.yaml")
    hooks.set_defaults(func=cmd_hooks)

    lock = sub.add_parser("lock-diff", help="compare this run's dvc.lock and metrics files with git's: exit 1 if "
                                            "the committed lock is out of step (code, params, stages), 0 if only "
                                            "float outputs drifted (another CPU) or nothing differs")
    lock.add_argument("--rev", default="HEAD", help="the git revision to compare with (default HEAD)")
    lock.add_argument("--repo", default=".", help="the study's git working tree (default .)")
    lock.add_argument("--strict", action="store_true", help="exit 1 on float drift too (the same kind of CPU)")
    lock.set_defaults(func=cmd_lock_diff)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except CortexLensError as err:
        for line in err.lines:
            print(line, file=sys.stderr)
        code = err.exit_code
    except BrokenPipeError:  # `cortexlens sql ... | head`
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
