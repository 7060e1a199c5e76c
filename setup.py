"""Package discovery: every package under src/ ships, plus the catalog (see pyproject.toml).

Everything else about the build is in pyproject.toml. A plain ``find`` there cannot add
``mlx_stack.catalog``, which lives outside src/ (catalog/).
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages("src", include=["mlx_stack", "mlx_stack.*"]), "mlx_stack.catalog"])
