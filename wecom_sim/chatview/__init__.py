"""The simulator's chat view: what each WeCom member sees, in a browser, with working cards and chat.

`GET /_sim/chat` lists members and groups; `GET /_sim/chat/{userid}?c=<conversation>` shows one member's
conversations (app chats, robot groups, the 1:1 chat with the app) with cards as that member sees them now.
Clicking, submitting and typing there send the real signed, encrypted callbacks through the simulator.
"""

from .views import add_routes

__all__ = ["add_routes"]
