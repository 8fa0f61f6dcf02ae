from mailpreflight.cli import command

command()
