"""The floor under any Textual dashboard: an app that shows one line and polls nothing.

``bench/run.py`` measures its first frame and its CPU while idle, in the same tmux windows as
gpuwatch's: what gpuwatch's first frame and its paused cost are compared with (the issue's
"close to Textual's idle floor")."""

from textual.app import App, ComposeResult
from textual.widgets import Static


class Floor(App):
    def compose(self) -> ComposeResult:
        yield Static("H100 - Textual's floor: one line, nothing polled")


if __name__ == "__main__":
    Floor().run()
