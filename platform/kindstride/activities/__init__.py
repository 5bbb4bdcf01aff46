"""Activities: recorded runs, walks and rides — reading uploaded files, storing them, evaluating them."""
