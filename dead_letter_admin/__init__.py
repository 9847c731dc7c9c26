"""``python -m dead_letter_admin``: the operators' command-line tool for kept dead letters (list, show,
replay, repair, discard), a client of the API's ``/api/dead-letters`` routes (docs/dead-letters.md)."""
