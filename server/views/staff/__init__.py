"""Staff pages, one blueprint per area.

* :mod:`.board` (blueprint ``staff``): sign-in and sign-out, the board (a day's visits, live), the outbox;
  and ``/``, which leads to the board.
* :mod:`.admin` (blueprint ``admin``): administration, for administrators only.
* :mod:`.stations` (blueprint ``stations``): vitals stations, where assistants take vitals
  and send them to the chart.

Templates live under ``server/templates/staff/<area>/``.
"""
