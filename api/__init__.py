"""Entry points: the command line now, HTTP later. They translate, never decide."""
