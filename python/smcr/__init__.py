"""smcr"""
