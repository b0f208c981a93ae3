"""The command line: click commands over the library, one module per command.

Only this package imports click and rich; nothing imports it.
"""
