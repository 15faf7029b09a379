"""The core layer: infrastructure every other package may use, which uses none of them
(standard library only). :mod:`.bitrate`: the bitrate of discrete streams."""
