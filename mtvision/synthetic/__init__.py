"""Writers of synthetic datasets in the standard on-disk layouts (the demo's data).

``mtvision.data`` reads datasets; this package writes them.
"""
