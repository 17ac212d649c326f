"""Over-the-air updates for field technicians: signing keys, releases, FUOTA transport and planning.

keys       Ed25519 release keys (`tembo keys generate / show`), the collar's public-key file
release    signed model and firmware bundles with their manifest (`tembo release model / firmware`)
fec        TS004-style fragmentation with forward error correction (the server's encoder)
planner    delivery time, duty cycle and fair use of a multicast + unicast update, resumable
setup_layouts  which FragSessionSetupReq layout each collar firmware version reads
"""
