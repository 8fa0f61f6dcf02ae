"""A static reader of POSIX sh / bash scripts: the `sh -c "…"` strings of Exec lines and the small maintenance
scripts units call. It lists every simple command the script may run and says whether that command failing
(non-zero exit status) makes the script exit non-zero, and if not, why not. Nothing is ever executed, and no
input makes it raise: what cannot be read becomes a warning.

Modelled: quoting, comments, line continuations, here-documents (skipped), `;` `&` `&&` `||` `|` `|&` `!`,
`( )` subshells, `{ }` groups, if / while / until / for / case, functions (calls followed 3 deep), `set -e` /
`set -o pipefail` (and `#!/bin/sh -e`), `exit` / `return` (also as the fallback of `||` or the branch a
failing `if` condition takes), `exec`, assignments and $VAR / ${VAR} / ${VAR:-d} / ${VAR:=d} / ${VAR:+a} with
field splitting, and the commands inside $(…), `…` and <(…). For `bash -e -c SCRIPT` read "set -e; " + SCRIPT.

Not modelled (simplifications):
- which branch runs: every branch of an if / case is read, in order, and all their assignments count;
- loops: a body is read once and stands where the loop stands (its commands are tolerated, "loop body" added,
  only when the loop is not the script's last statement);
- a command followed by a look at `$?` is "status checked by the script"; what the script then does with each
  status is read by deps/shell/status.py (`case $?`, `if`/`[`/`test` comparisons of `$?` or of `$rc` kept by
  `rc=$?` / `cmd || rc=$?`, `|| exit N`), and anything else there is "unknown";
- guards the tree decides (`test -x FILE || exit 0`, `command -v gpg >/dev/null || exit 0`) end the script
  where they fail in the tree, when the caller says how tests come out (`read_shell(…, decide=…)`);
- globbing, tilde and brace expansion, aliases, positional parameters, arithmetic (and commands inside it),
  `break` / `continue`, `trap`, `${PIPESTATUS[…]}`; command substitutions in redirections and here-documents
  are not read (a warning says so); files read by `.` / `source` and `eval`'d text are not read;
- a value that holds anything unknown ($(…), $?, an unknown $VAR) makes the variable unknown;
- commands of a function body keep the lines they are written on, not the call's.
"""

from mailpreflight.deps.shell.reader import PIPE, SUBSTITUTION, ShellCommand, ShellReading, read_shell

__all__ = ["PIPE", "SUBSTITUTION", "ShellCommand", "ShellReading", "read_shell"]
