"""Gallery search: an index of RGB images embedded once (`index`), ranking against it or a plain
folder (`search`), and their commands `reid index build`, `reid search`, `reid serve` (`cli`)."""
