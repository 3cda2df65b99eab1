"""Staff pages, one blueprint per area.

* :mod:`.board` (blueprint ``staff``): sign-in and sign-out, the day's visits, the outbox.
* :mod:`.stations` (blueprint ``stations``): vitals stations, where assistants take vitals
  and send them to the chart.

Templates live under ``server/templates/staff/<area>/``.
"""
