"""Building extension images: specs, sources (trees and .deb/.rpm packages), normalisation and
the image writers. Package payloads are extracted in Python, by our own rules (tarsafe.py), never
by running maintainer scripts."""
