"""Session-wide test settings."""
import os

# Tests never write to the user's real results history: runs the tests start record
# nothing unless a test names its own database (GRUBENCH_DB or --db under tmp_path).
os.environ["GRUBENCH_DB"] = "off"
