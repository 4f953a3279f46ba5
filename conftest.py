# With --import-mode=importlib, pytest names a test file after its folders, e.g.
# "bank_simulator.tests.unit.test_x", and would register the *folder* bank_simulator/ (the
# distribution) as a package of that name, hiding the installed one. Importing the real
# packages first keeps the names pointing at the code under test.
import bank_simulator
import payment_gateway

__all__ = ["bank_simulator", "payment_gateway"]

# The browser fixtures (browser, browser_context, page) for every test tree: tests/support is on
# pytest's pythonpath (pyproject.toml).
pytest_plugins = ["browser_testing"]
