"""moevit.hw"""
