"""moevit.host: the accelerator's host library (issue 12).

One driver (:class:`moevit.host.driver.Accelerator`) written against a small device interface
(:class:`moevit.host.device.Device`), with backends by name (:func:`moevit.host.backends.open_device`):
``golden`` (a behavioural device running the golden model), ``pynq`` (the ZCU104 board) and
``rtl`` (the RTL top under cocotb; not built yet, see issue 11).
"""
