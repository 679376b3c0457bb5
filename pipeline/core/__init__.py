"""The bottom layer, shared by both stages and the pipeline: errors, atomic files and hashing, the code-dataset
format (written by tokenize, read by the priors), image tensors and grids, training options. It imports only
third-party packages."""
