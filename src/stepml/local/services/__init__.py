"""Process-lifetime moto patches for services other than Step Functions, one module per service.

Each module registers its ``stepml.local.patching.Patch`` objects at import; each patch makes
moto answer as AWS does where this app relies on it (a missing API, a check moto skips). moto is
imported inside each ``install`` only, so registering loads no moto.
"""
