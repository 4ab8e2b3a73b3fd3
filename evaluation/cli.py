"""``urcdm-eval``: pFID-50k, FID-10k, KID and precision/recall on slides of any size.

The metrics land with the evaluation issue; until then the command only describes itself.
"""

import sys

from urcdm.clikit import describe_only_main

main = describe_only_main(
    "urcdm-eval",
    "Score synthetic slides against real ones: pfid, fid, kid, prc, all, stats, crops. "
    "(Not implemented yet: this release only ships the slide I/O these metrics read through.)",
)

if __name__ == "__main__":
    sys.exit(main())
