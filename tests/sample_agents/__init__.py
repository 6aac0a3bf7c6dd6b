"""An agents package as a user's app has one: the shipped assistant, and a second agent added as one file."""
