"""moevit.sim"""
