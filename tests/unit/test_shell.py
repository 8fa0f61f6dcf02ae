"""The static shell reader: which commands a script runs, and whether each one failing fails the script."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailpreflight.deps.shell import PIPE, SUBSTITUTION, ShellCommand, ShellReading, read_shell


def only(reading: ShellReading, tool: str) -> ShellCommand:
    """The one command run as `tool`."""
    found = [c for c in reading.commands if c.argv[:1] == (tool,)]
    assert len(found) == 1, reading.commands
    return found[0]


def status(script: str, tool: str = "sa-update") -> tuple[bool, tuple[str, ...]]:
    command = only(read_shell(script), tool)
    return command.tolerated, command.why


def argv(script: str, env: dict[str, str] | None = None) -> list[tuple[str, ...]]:
    return [c.argv for c in read_shell(script, env).commands]


# --- || && ; -------------------------------------------------------------------------------------------------

def test_seed_or_true() -> None:
    reading = read_shell("sa-update || true")
    assert [c.argv for c in reading.commands] == [("sa-update",), ("true",)]
    assert status("sa-update || true") == (True, ("'|| true'",))
    assert only(reading, "true").tolerated is False  # the fallback is the last command; it cannot fail anyway
    assert reading.warnings == () and reading.exits_early is False


@pytest.mark.parametrize(("script", "why"), [
    ("sa-update || /bin/true", "'|| true'"),
    ("sa-update || /usr/bin/true", "'|| true'"),
    ("sa-update || :", "'|| :'"),
    ("sa-update || exit 0", "'|| exit 0'"),
    ("sa-update || { logger -t sa 'update failed'; exit 0; }", "'|| exit 0'"),
    ("sa-update || echo failed", "'|| <fallback>'"),
    ("sa-update && sa-compile || true", "'|| true'"),
])
def test_or_fallbacks(script: str, why: str) -> None:
    assert status(script) == (True, (why,))


def test_or_exit_0_reports_no_exit_and_no_early_exit() -> None:
    reading = read_shell("sa-update || exit 0")
    assert [c.argv for c in reading.commands] == [("sa-update",)]
    assert reading.exits_early is False  # the exit only happens when sa-update fails


@pytest.mark.parametrize("script", [
    "sa-update || exit 1",
    "sa-update || exit",
    "sa-update || exit $?",
    "sa-update || { echo 'update failed' >&2; exit 2; }",
    "die() { echo \"$*\" >&2; exit 1; }\nsa-update || die 'no update'\necho done",
])
def test_or_exit_nonzero_is_a_failure(script: str) -> None:
    assert status(script) == (False, ())


def test_fallback_status_counts_as_the_last_command() -> None:
    reading = read_shell("sa-update || sa-update --nogpg")
    assert [(c.argv, c.tolerated) for c in reading.commands] == [
        (("sa-update",), True), (("sa-update", "--nogpg"), False)]


def test_sequence_only_the_last_counts() -> None:
    assert status("sa-update; true") == (True, ("not the last command",))
    assert status("sa-update\nspamd -d", "spamd") == (False, ())


def test_and_list_last_or_not() -> None:
    assert status("sa-update && spamd -d") == (False, ())
    assert status("sa-update && spamd -d", "spamd") == (False, ())
    assert status("sa-update && spamd -d; echo started") == (True, ("not the last command",))


# --- set -e / pipefail ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["set -e", "set -eu", "set -o errexit", "set -euo pipefail", "set -ex"])
def test_errexit_makes_any_failure_fatal(prefix: str) -> None:
    assert status(f"{prefix}; sa-update; echo ok") == (False, ())


def test_errexit_spares_conditions_and_lists() -> None:
    assert status("set -e; sa-update || true; echo ok") == (True, ("not the last command", "'|| true'"))
    assert status("set -e; if sa-update; then echo y; fi; echo ok")[0] is True
    assert status("set -e; sa-update && echo y; echo ok") == (True, ("not the last command",))
    assert status("set -e; ! sa-update; echo ok")[0] is True
    assert status("set -e; sa-update | logger; echo ok")[0] is True  # no pipefail: only logger's status counts


def test_set_plus_e_turns_it_off() -> None:
    assert status("set -e\nset +e\nsa-update\necho ok") == (True, ("not the last command",))
    assert status("set -e\nsa-update\nset +e\necho ok") == (False, ())


def test_errexit_from_shebang_and_from_bash_dash_e() -> None:
    assert status("#!/bin/sh -e\nsa-update\necho ok") == (False, ())
    assert status("#!/bin/sh\nsa-update\necho ok")[0] is True
    # `bash -e -c SCRIPT`: the caller prepends "set -e; " on the same line, so line numbers stay.
    command = only(read_shell("set -e; " + "sa-update\necho ok"), "sa-update")
    assert (command.tolerated, command.line) == (False, 1)


def test_pipeline_and_pipefail() -> None:
    assert status("sa-update | tee /var/log/sa.log") == (True, (PIPE,))
    assert status("sa-update | tee /var/log/sa.log", "tee") == (False, ())
    assert status("set -o pipefail; sa-update | tee /var/log/sa.log") == (False, ())
    assert status("set -o pipefail; set +o pipefail; sa-update | tee log")[0] is True
    assert status("sa-update |& logger -t sa")[0] is True


# --- compound commands ---------------------------------------------------------------------------------------

def test_if_condition_and_branches() -> None:
    script = "if sa-update; then\n  sa-compile\nelif sa-update --nogpg; then\n  echo nogpg\nelse\n  logger x\nfi"
    reading = read_shell(script)
    assert [(c.argv[0], c.tolerated, c.why, c.line) for c in reading.commands] == [
        ("sa-update", True, ("if condition",), 1),
        ("sa-compile", False, (), 2),
        ("sa-update", True, ("if condition",), 3),
        ("echo", False, (), 4),
        ("logger", False, (), 6),
    ]
    assert status("if sa-update; then sa-compile; fi; echo done", "sa-compile") == (True, ("not the last command",))


def test_if_branch_that_exits_makes_the_condition_fatal() -> None:
    assert status("if ! sa-update; then echo 'update failed' >&2; exit 1; fi\necho ok") == (False, ())
    assert status("if sa-update; then sa-compile; else exit 2; fi; echo ok") == (False, ())
    assert status("if ! sa-update; then echo failed; fi; echo ok")[0] is True
    assert status("if ! sa-update; then exit 0; fi; sa-compile") == (True, ("not the last command", "if condition"))
    assert status("if ! a || ! sa-update; then exit 1; fi") == (False, ())
    assert status("if ! sa-update && ! b; then exit 1; fi")[0] is True  # b still decides


def test_while_until_and_loop_body() -> None:
    assert status("while ! sa-update; do sleep 60; done")[1] == ("while/until condition", "'!' negation")
    assert status("until sa-update; do sleep 60; done") == (True, ("while/until condition",))
    assert status("until sa-update; do sleep 60; done", "sleep") == (False, ())  # the loop is the last statement
    assert status("until sa-update; do sleep 60; done; echo ok", "sleep") == (
        True, ("not the last command", "loop body"))


def test_for_loop_variable() -> None:
    assert argv("for ch in updates.spamassassin.org; do sa-update --channel $ch; done") == [
        ("sa-update", "--channel", "updates.spamassassin.org")]
    assert argv("for ch in a b; do sa-update --channel $ch; done") == [("sa-update", "--channel", "$ch")]


def test_subshells() -> None:
    assert status("(sa-update) || true") == (True, ("'|| true'",))
    assert status("(sa-update; echo done)") == (True, ("not the last command",))
    assert status("(set -e; sa-update; echo done); echo after") == (True, ("not the last command",))
    assert status("set -e; (sa-update; echo done)") == (False, ())
    assert argv("(X=1); echo $X") == [("echo", "$X")]  # a subshell's assignments stay there


def test_groups() -> None:
    reading = read_shell("{ sa-update; sa-compile; } || true")
    assert [(c.argv[0], c.tolerated) for c in reading.commands] == [
        ("sa-update", True), ("sa-compile", True), ("true", False)]
    assert only(reading, "sa-compile").why == ("'|| true'",)
    assert status("{ sa-update; sa-compile; }", "sa-compile") == (False, ())
    assert status("{ X=1; }; echo $X", "echo") == (False, ())
    assert argv("{ X=1; }; echo $X") == [("echo", "1")]  # a group runs in the script's own shell


def test_negation() -> None:
    assert status("! sa-update") == (True, ("'!' negation",))


def test_case_branches_take_the_case_position() -> None:
    script = 'case "$1" in\n  update|up) sa-update ;;\n  *) echo "usage: $0 update" >&2; exit 2 ;;\nesac'
    reading = read_shell(script)
    assert [(c.argv, c.tolerated, c.line) for c in reading.commands] == [
        (("sa-update",), False, 2), (("echo", "usage: $0 update"), True, 3)]  # `exit 2` decides, not echo
    assert reading.warnings == () and reading.exits_early is False  # the exit is in a branch


def test_function_called_later() -> None:
    script = "update() {\n  sa-update --channel \"$CH\"\n}\nCH=x\nupdate || true\nupdate"
    reading = read_shell(script)
    assert [(c.argv, c.line, c.tolerated, c.why) for c in reading.commands] == [
        (("sa-update", "--channel", "x"), 2, True, ("not the last command", "'|| true'")),  # own lines kept
        (("true",), 5, True, ("not the last command",)),
        (("sa-update", "--channel", "x"), 2, False, ()),
    ]
    assert argv("f() { sa-update; }") == []  # defined, never called


def test_recursive_function_stops() -> None:
    reading = read_shell("f() { echo x; f; }\nf")
    assert len(reading.commands) == 3
    assert any("nested more than 3 deep" in w for w in reading.warnings)


def test_return_in_function() -> None:
    script = "check() { sa-update; return 0; echo never; }\ncheck\necho ok"
    assert argv(script) == [("sa-update",), ("echo", "ok")]
    assert status("f() { sa-update || return 1; }\nf") == (False, ())
    assert status("f() { sa-update || return 1; }\nf; echo ok") == (True, ("not the last command",))


# --- words and variables -------------------------------------------------------------------------------------

def test_redirections_are_not_arguments() -> None:
    assert argv("sa-update -D 2>&1 >/dev/null") == [("sa-update", "-D")]
    assert argv("sa-update &>/dev/null </dev/null >>/var/log/x 2>/dev/null 3>&-") == [("sa-update",)]
    assert argv(">/dev/null sa-update") == [("sa-update",)]


def test_prefix_assignment_is_for_that_command_only() -> None:
    command = only(read_shell('NAME=v sa-update --channel "$NAME"\necho $NAME'), "sa-update")
    # The shell expands the words before NAME=v takes effect.
    assert command.argv == ("sa-update", "--channel", "$NAME")
    assert command.assignments == {"NAME": "v"}
    assert argv('NAME=v sa-update --channel "$NAME"', {"NAME": "old"})[0] == ("sa-update", "--channel", "old")
    assert only(read_shell("NAME=v sa-update\necho $NAME"), "echo").argv == ("echo", "$NAME")


def test_script_assignment() -> None:
    reading = read_shell("CH=updates.spamassassin.org; sa-update --channel $CH")
    assert only(reading, "sa-update").argv == ("sa-update", "--channel", "updates.spamassassin.org")
    assert only(reading, "sa-update").assignments == {"CH": "updates.spamassassin.org"}
    assert argv("export CH=a\nreadonly K=b\nsa-update --channel $CH --gpgkey $K") == [
        ("sa-update", "--channel", "a", "--gpgkey", "b")]


def test_env_is_used_and_reported() -> None:
    command = only(read_shell("sa-update $SAUPDATE_ARGS", {"SAUPDATE_ARGS": "-D --nogpg"}), "sa-update")
    assert command.argv == ("sa-update", "-D", "--nogpg")
    assert command.assignments == {"SAUPDATE_ARGS": "-D --nogpg"}


def test_unknown_variables_are_kept_as_written() -> None:
    assert argv('sa-update $X "${Y}" a$X/b') == [("sa-update", "$X", "${Y}", "a$X/b")]
    assert argv("$SA_UPDATE --quiet")[0] == ("$SA_UPDATE", "--quiet")
    assert any("dynamic command name $SA_UPDATE" in w for w in read_shell("$SA_UPDATE").warnings)


def test_assignments_apply_left_to_right() -> None:
    assert argv("A=1 B=$A; echo $B") == [("echo", "1")]
    assert argv("export A=1 B=$A; echo $B") == [("echo", "1")]
    assert argv("A=x; A+=y; echo $A") == [("echo", "xy")]
    assert argv("read -r X; echo $X", {"X": "env"}) == [("read", "-r", "X"), ("echo", "$X")]
    assert argv("for f in /etc/mail/*.cf; do sa-update -C $f; done") == [("sa-update", "-C", "$f")]


def test_field_splitting_and_quotes() -> None:
    script = "A='-D --nogpg'; E=; sa-update $A \"$A\" $E \"$E\" '$A' \\$A x\\ y"
    assert argv(script) == [("sa-update", "-D", "--nogpg", "-D --nogpg", "", "$A", "$A", "x y")]
    assert argv('echo "a\\"b\\\\c\\d" \'\\n\'') == [("echo", 'a"b\\c\\d', "\\n")]


def test_parameter_defaults() -> None:
    assert argv("sa-update --channel ${CH:-updates.spamassassin.org}") == [
        ("sa-update", "--channel", "updates.spamassassin.org")]
    assert argv("sa-update --channel ${CH:-d}", {"CH": "mine"}) == [("sa-update", "--channel", "mine")]
    assert argv("sa-update --channel ${CH:-d}", {"CH": ""}) == [("sa-update", "--channel", "d")]
    assert argv("sa-update --channel ${CH-d}", {"CH": ""}) == [("sa-update", "--channel")]
    assert argv(": ${CH:=x}; sa-update --channel $CH")[1] == ("sa-update", "--channel", "x")
    assert argv("echo ${A:+yes} ${B:+yes} ${A#x}", {"A": "1"}) == [("echo", "yes", "${B:+yes}", "${A#x}")]


def test_command_substitution_is_read() -> None:
    reading = read_shell("sa-update --gpgkey $(curl -s http://x/key)")
    assert only(reading, "curl").argv == ("curl", "-s", "http://x/key")
    assert only(reading, "curl").why == (SUBSTITUTION,)
    assert only(reading, "sa-update").argv == ("sa-update", "--gpgkey", "$(curl -s http://x/key)")
    assert status("echo `sa-update --version`")[1] == (SUBSTITUTION,)
    assert status('echo "v=$(echo $(sa-update -V))"')[1] == (SUBSTITUTION,)
    assert argv("echo $((1 + 2))") == [("echo", "$((1 + 2))")]  # arithmetic: not a command


def test_bare_assignment_takes_the_substitution_status() -> None:
    assert status("OUT=$(sa-update 2>&1)") == (False, ())
    assert status("OUT=$(sa-update 2>&1); echo $OUT") == (True, ("not the last command",))
    assert status("set -e; OUT=$(sa-update 2>&1); echo done") == (False, ())
    assert status("f() { local out=$(sa-update); }\nf") == (True, (SUBSTITUTION,))  # `local` masks it
    assert argv("OUT=$(sa-update); echo $OUT")[1] == ("echo", "$OUT")  # its value is not known


def test_process_substitution() -> None:
    assert status("diff <(sa-update --list) /dev/null") == (True, (SUBSTITUTION,))
    reading = read_shell("while read -r l; do echo $l; done < <(sa-update --list)")
    assert reading.warnings == ("line 1: command substitution in a redirection not followed",)


def test_exec_replaces_the_shell() -> None:
    reading = read_shell("sa-update || true\nexec /usr/sbin/spamd -d --pidfile=/run/spamd.pid\necho never")
    assert [c.argv for c in reading.commands][-1] == ("/usr/sbin/spamd", "-d", "--pidfile=/run/spamd.pid")
    assert only(reading, "/usr/sbin/spamd").tolerated is False
    assert reading.exits_early is True
    redirect_only = read_shell("exec >>/var/log/sa.log 2>&1\nsa-update\necho ok")
    assert [c.argv[0] for c in redirect_only.commands] == ["sa-update", "echo"]
    assert redirect_only.exits_early is False


def test_exit_ends_the_script() -> None:
    reading = read_shell("sa-update\nexit 0\nspamd")
    assert [c.argv for c in reading.commands] == [("sa-update",)]
    assert reading.exits_early is True
    assert reading.commands[0].why == ("not the last command",)
    assert status("sa-update\nexit $?") == (False, ())  # the exit passes sa-update's status on
    assert read_shell("if [ -x /x ]; then exit 0; fi; sa-update").exits_early is False


def test_status_checked_by_the_script() -> None:
    reading = read_shell("sa-update\nrc=$?\n[ $rc -le 1 ]")
    assert only(reading, "sa-update").why == ("status checked by the script",)
    assert only(reading, "[").tolerated is False
    assert status("sa-update\nif [ $? -gt 1 ]; then exit 1; fi") == (True, ("status checked by the script",))
    assert status("set -e; sa-update; rc=$?") == (False, ())  # errexit acts before anyone looks


def test_background() -> None:
    command = only(read_shell("sa-update &\nspamd -d"), "sa-update")
    assert (command.tolerated, command.why, command.background) == (True, ("background",), True)
    assert only(read_shell("set -e; sa-update & wait"), "sa-update").tolerated is True


def test_source_and_eval() -> None:
    reading = read_shell(". /etc/default/spamassassin\nsource ./lib.sh\neval \"$CMD\"")
    assert [c.argv for c in reading.commands] == [
        ("source", "/etc/default/spamassassin"), ("source", "./lib.sh"), ("eval", "$CMD")]
    assert any("/etc/default/spamassassin not read" in w for w in reading.warnings)
    assert any("line 3: eval not followed" in w for w in reading.warnings)


def test_double_brackets_and_arithmetic() -> None:
    reading = read_shell("[[ -x /usr/bin/sa-compile && -d /var/lib ]] && sa-compile\n((n > 1)) || true")
    assert reading.commands[0].argv == ("[[", "-x", "/usr/bin/sa-compile", "&&", "-d", "/var/lib", "]]")
    assert [c.argv[0] for c in reading.commands] == ["[[", "sa-compile", "((n > 1))", "true"]


# --- lines, comments, continuations, here-documents --------------------------------------------------------

def test_line_numbers_and_continuation() -> None:
    reading = read_shell("# update\n\nsa-update \\\n  --channel x \\\n  --nogpg\nspamd -d  # run")
    assert [(c.argv, c.line) for c in reading.commands] == [
        (("sa-update", "--channel", "x", "--nogpg"), 3), (("spamd", "-d"), 6)]


def test_comments_only_at_word_start() -> None:
    assert argv("# sa-update\nsa-update --x=a#b # comment; spamd") == [("sa-update", "--x=a#b")]
    assert argv("echo '# not a comment' \"#\"") == [("echo", "# not a comment", "#")]


def test_multiline_quotes_keep_line_numbers() -> None:
    reading = read_shell("echo 'a\nb'\nsa-update")
    assert reading.commands[0].argv == ("echo", "a\nb")
    assert reading.commands[1].line == 3


def test_heredoc_body_is_not_read() -> None:
    reading = read_shell("cat <<EOF >/etc/x\nsa-update\nspamd\nEOF\nsa-compile")
    assert [(c.argv, c.line) for c in reading.commands] == [(("cat",), 1), (("sa-compile",), 5)]
    assert argv("cat <<-'END'\n\tsa-update $(x)\n\tEND\necho ok") == [("cat",), ("echo", "ok")]
    assert argv("cat <<A; cat <<B\na\nA\nb\nB\necho ok") == [("cat",), ("cat",), ("echo", "ok")]
    warned = read_shell("cat <<EOF\n$(sa-update)\nEOF")
    assert any("here-document" in w for w in warned.warnings)
    assert any("unterminated here-document" in w for w in read_shell("cat <<EOF\nsa-update").warnings)


def test_unterminated_quote_is_best_effort() -> None:
    reading = read_shell('sa-update --channel "abc')
    assert reading.commands[0].argv == ("sa-update", "--channel", "abc")
    assert reading.warnings == ("line 1: unterminated quote",)
    assert read_shell("sa-update $(curl").commands[0].argv == ("curl",)


def test_syntax_errors_warn_and_go_on() -> None:
    reading = read_shell("fi\nsa-update )\nif true; then echo")
    assert ("sa-update",) in [c.argv for c in reading.commands]
    assert any("unexpected 'fi'" in w for w in reading.warnings)
    assert any("expected 'fi'" in w for w in reading.warnings)


# --- whole scripts -------------------------------------------------------------------------------------------

SPAMASSASSIN_MAINT = """\
#!/bin/sh
# Daily rules update, modelled on Debian's spamassassin-maint.
set -u
SAUPDATE_ARGS="--gpghomedir /var/lib/spamassassin/sa-update-keys"

do_compile() {
    if [ -x /usr/bin/re2c ] && [ -x /usr/bin/sa-compile ]; then
        runuser -u debian-spamd -- sa-compile --quiet
        chmod -R go-w,go+rX /var/lib/spamassassin/compiled
    fi
}

reload() {
    systemctl try-reload-or-restart spamd.service >/dev/null 2>&1 || true
}

runuser -u debian-spamd -- sa-update $SAUPDATE_ARGS
rc=$?
if [ $rc -eq 0 ]; then      # 0: new rules; 1: no update; anything else: an error
    do_compile
    reload
elif [ $rc -ne 1 ]; then
    exit $rc
fi
"""


def test_spamassassin_maint() -> None:
    reading = read_shell(SPAMASSASSIN_MAINT)
    table = [(c.argv[0], c.line, c.tolerated, c.why) for c in reading.commands]
    assert table == [
        ("runuser", 17, True, ("status checked by the script",)),
        ("[", 19, True, ("if condition",)),
        ("[", 7, True, ("not the last command", "if condition")),  # do_compile is not the last command
        ("[", 7, True, ("not the last command", "if condition")),
        ("runuser", 8, True, ("not the last command",)),
        ("chmod", 9, True, ("not the last command",)),
        ("systemctl", 14, True, ("'|| true'",)),
        ("true", 14, False, ()),
        ("[", 22, True, ("if condition",)),
    ]
    update = reading.commands[0]
    assert update.argv == ("runuser", "-u", "debian-spamd", "--", "sa-update", "--gpghomedir",
                           "/var/lib/spamassassin/sa-update-keys")
    assert update.assignments == {"SAUPDATE_ARGS": "--gpghomedir /var/lib/spamassassin/sa-update-keys"}
    assert reading.commands[-1].argv == ("[", "$rc", "-ne", "1", "]")
    assert reading.warnings == () and reading.exits_early is False


def test_exec_start_pre_strings() -> None:
    reading = read_shell("sa-update --channel ${CHANNEL} && sa-compile; exec spamd $OPTIONS",
                         {"CHANNEL": "updates.spamassassin.org", "OPTIONS": "-d -m 5"})
    assert [(c.argv, c.tolerated) for c in reading.commands] == [
        (("sa-update", "--channel", "updates.spamassassin.org"), True),
        (("sa-compile",), True),
        (("spamd", "-d", "-m", "5"), False),
    ]


# --- never raises ----------------------------------------------------------------------------------------------

TOKENS = st.sampled_from([
    "sa-update", " ", "\t", "\n", ";", "&", "&&", "||", "|", "|&", "!", "(", ")", "{", "}", "{ ", " }", "if ",
    "then ", "elif ", "else ", "fi", "while ", "until ", "do ", "done", "for x in a; ", "case $x in ", "a) ",
    ";;", "esac", "f() ", "function g ", "f", "g", "exit", "exit 1", "return", "exec ", "set -e", "set -o pipefail",
    "'", '"', "`", "$(", "$((", "${", "${X:-", "${X:=", "$X", "$?", "X=", "X=1 ", "\\", "\\\n", "#", "<<EOF",
    "<<-'E'", "EOF", "\tE", "<<<", ">", "2>&1", "&>", "<(", "[[", "]]", "((", "))", "true", ":", "eval ", ". ",
    "local y=$(", "export Z=", "rc=$?", "$'", "=", "*", "|| true", "&& x", "\r",
])


def check(reading: ShellReading, script: str) -> None:
    assert isinstance(reading, ShellReading)
    for command in reading.commands:
        assert command.argv and command.tolerated == bool(command.why)
        assert 1 <= command.line <= script.count("\n") + 1


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=120))
def test_random_text_never_raises(script: str) -> None:
    check(read_shell(script), script)


@settings(max_examples=600, deadline=None)
@given(st.lists(TOKENS, max_size=40).map("".join),
       st.dictionaries(st.sampled_from(["X", "x", "Y", "1"]), st.text(max_size=6), max_size=3))
def test_random_shell_tokens_never_raise(script: str, env: dict[str, str]) -> None:
    check(read_shell(script, env), script)


@pytest.mark.parametrize("script", ["(" * 3000, "$(" * 3000, "{ " * 3000, "if " * 2000, '"$(' * 1500])
def test_deep_nesting_never_raises(script: str) -> None:
    assert isinstance(read_shell(script), ShellReading)


def test_a_remembered_syntax_tree_reads_as_a_fresh_one() -> None:
    """The parse of a script is remembered (units of a fleet share their `sh -c` lines): reading it again, with
    another environment, gives what a fresh parse gives, and reading never changes the tree."""
    from copy import deepcopy

    from mailpreflight.deps.shell import memo
    script = ('set -e\nf() { sa-update "$@" || return 1; }\nif command -v gpg >/dev/null; then f --channel $CH; '
              'fi\nx=$(curl -s http://$HOST/) || true\ncase $x in 0|1) exit 0;; *) wget "$URL";; esac\n(')
    memo._PARSED.clear()
    first = read_shell(script, {"CH": "a.example", "HOST": "h1"})
    tree = deepcopy(memo._PARSED)
    again = read_shell(script, {"CH": "b.example", "URL": "http://u/"})
    assert tree == memo._PARSED
    memo._PARSED.clear()
    assert again == read_shell(script, {"CH": "b.example", "URL": "http://u/"})
    assert first == read_shell(script, {"CH": "a.example", "HOST": "h1"}) and first.warnings
