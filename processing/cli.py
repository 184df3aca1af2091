"""What every hcam command line shares: `HCAMArgumentParser` and `command_errors`.

`HCAMArgumentParser` is transformers' `HfArgumentParser` made to behave as its example scripts' users expect:

- every boolean option works as a bare flag (``--freeze_audio_encoder``) and with a value (``--freeze_audio_encoder
  false``), the ``bool | None`` ones included (HfArgumentParser makes those, whose ``None`` means "the stage's
  default", require a value);
- the names transformers' examples use are the primary flags (``--dataset_config_name``, ``--text_column_name``,
  ...); the names hcam used before stay as aliases for one release, with a deprecation warning (`FLAG_RENAMES`).

`command_errors` turns a data or argument error into its message and exit status 2 (no traceback; ``HCAM_DEBUG=1``
shows it).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings

from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

from .corpora import MANIFEST_COLUMNS
from .report import HCAMDataError

# old flag -> transformers' example name. The old one is accepted for one release (a FutureWarning says so).
FLAG_RENAMES = {
    "--dataset_config": "--dataset_config_name",
    # transformers' examples: --cache_dir is where downloaded models go; ours was the stage-I embedding cache
    "--cache_dir": "--embedding_cache_dir",
    **{f"--{option.name}": f"--{option.name}_name" for option in MANIFEST_COLUMNS},
}


def _hyphenated(flag):
    return "--" + flag[2:].replace("_", "-")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter, except that an option whose help already says its default (an option whose
    unset value means "decided elsewhere") gets no "(default: None)" after it."""

    def _get_help_string(self, action):
        if action.default is None and "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class HCAMArgumentParser(HfArgumentParser):
    """`HfArgumentParser` with bare boolean flags and transformers' names first (module docstring)."""

    def __init__(self, dataclass_types, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(dataclass_types, **kwargs)

    def _add_dataclass_arguments(self, dtype):
        super()._add_dataclass_arguments(dtype)
        for action in self._actions:
            if action.type is string_to_bool and action.nargs is None:  # `bool | None`: a value was required
                action.nargs, action.const = "?", True
            for old, new in FLAG_RENAMES.items():
                if old not in action.option_strings and new not in action.option_strings:
                    continue
                wanted = [new, _hyphenated(new), old, _hyphenated(old)]
                for flag in wanted:
                    self._option_string_actions.setdefault(flag, action)
                rest = [flag for flag in action.option_strings if flag not in wanted]
                if old not in action.option_strings and action.help:
                    action.help += f" (Formerly {old}: deprecated, removed in the next release.)"
                action.option_strings = wanted + rest
                action.metavar = new[2:].upper()

    def parse_args_into_dataclasses(self, args=None, **kwargs):
        warn_renamed_flags(sys.argv[1:] if args is None else args)
        return super().parse_args_into_dataclasses(args=args, **kwargs)


def warn_renamed_flags(argv):
    """A FutureWarning for each old flag name in `argv` (FLAG_RENAMES), naming the new one."""
    for old, new in FLAG_RENAMES.items():
        if any(word in (old, _hyphenated(old)) or word.startswith((old + "=", _hyphenated(old) + "="))
               for word in argv):
            warnings.warn(f"{old} is deprecated and will be removed in the next release: use {new}.", FutureWarning,
                          stacklevel=3)


def debugging():
    """Whether errors should keep their traceback (HCAM_DEBUG=1)."""
    return os.environ.get("HCAM_DEBUG", "").strip().lower() in ("1", "true", "yes")


@contextlib.contextmanager
def command_errors(prog):
    """Data and argument errors end the command with `prog: error: <message>` and exit status 2, as argparse's own
    errors do, without a traceback; HCAM_DEBUG=1 lets the exception through with its traceback."""
    try:
        yield
    except SystemExit as error:
        if isinstance(error.code, str) and not debugging():
            print(f"{prog}: error: {error.code}", file=sys.stderr)
            raise SystemExit(2) from None
        raise
    except HCAMDataError as error:
        if debugging():
            raise
        print(f"{prog}: error: {error}\n(HCAM_DEBUG=1 shows the traceback.)", file=sys.stderr)
        raise SystemExit(2) from None


__all__ = ["HCAMArgumentParser", "FLAG_RENAMES", "command_errors", "warn_renamed_flags"]
