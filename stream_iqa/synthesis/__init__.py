"""Degradations rendered onto clean footage: the runtime's own module for them, because the photo demo, the sample
clips of ``stream-iqa demo`` and the tests need them as much as training does.

``degradations`` — low light, haze, sprite flare, blur, noise, compression… as seeded recipes (``Recipe``,
``apply_recipe``); ``flare_optics`` — lens flare rendered from optics; ``color`` — sRGB ↔ linear light; ``clips`` —
short videos built from real photos with degraded spans at known times (the depth prior shapes their haze).
"""
