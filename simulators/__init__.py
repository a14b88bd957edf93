"""Stand-ins for the hardware and the people: devices, family receivers (and later AMI, provider apps).

They speak the real wire protocols and reuse the project's protocol modules, so that a
simulator and the backend cannot disagree about the contract.
"""
