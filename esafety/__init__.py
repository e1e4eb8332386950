"""esafety: the command line. It imports every layer; nothing imports it."""
