"""moevit.host"""
