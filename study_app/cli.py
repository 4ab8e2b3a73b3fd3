"""``urcdm-study``: run a real-vs-synthetic reader study and score it as the paper's Table 1.

The app lands with the reader-study issue; until then the command only describes itself.
"""

import sys

from urcdm.clikit import describe_only_main

main = describe_only_main(
    "urcdm-study",
    "Real-vs-synthetic reader study for pathologists (Streamlit), scored as the paper's Table 1. (Not implemented yet.)",
)

if __name__ == "__main__":
    sys.exit(main())
