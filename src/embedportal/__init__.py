"""embedportal: show Power BI reports to people without a Power BI licence."""

__version__ = "0.1.0"
