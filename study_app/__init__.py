"""Reader study: pathologists judge real vs synthetic images; scored as the paper's Table 1."""
