"""The meter provider cryostorm installs: the SDK's MeterProvider is built on the first `get_meter()`.

Importing `opentelemetry.sdk.metrics` and building its provider costs every process ~20 ms of CPU at
start-up (issue #17): the hook runs in every Python process of the program (workers, every Python
child), and most never record a metric. `LazyMeterProvider` is an API `MeterProvider` (the API module
is already imported by the trace SDK); it builds the real one, exactly as before (same readers,
resource, exemplar filter), the first time a meter is asked for, under a lock, and delegates to it
from then on. A process that never asks for a meter never imports the metrics SDK and exports no
metrics (it had none to export). cryostorm's own metrics (`cryostorm.exporter.*`) ask for their meter
when the first span or log record is queued, so a process that produces telemetry still exports them.

`sdk_provider` is the SDK's MeterProvider (built if it was not yet), for code that needs the SDK's
own type or attributes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from opentelemetry.metrics import Meter, MeterProvider, NoOpMeter

# The logger (and messages) the SDK's MeterProvider uses for the same misuse.
_SDK_LOGGER = "opentelemetry.sdk.metrics._internal"


class LazyMeterProvider(MeterProvider):
    """A MeterProvider that builds the SDK's one (with `build`) when the first meter is asked for.

    A build that fails there is said once on stderr and leaves metrics off in this process (the
    program is never broken by it); `sdk_provider` raises it instead.

    Example:
        >>> from opentelemetry.metrics import NoOpMeterProvider
        >>> provider = LazyMeterProvider(NoOpMeterProvider)
        >>> provider.built
        False
        >>> _ = provider.get_meter("app")
        >>> provider.built, provider.used
        (True, True)
    """

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._sdk: Any = None
        self._builder: int | None = None  # the thread building it now
        self._waiting: list[Any] = []  # meters asked for by the build itself, set when it is done
        self._failed = self._shutdown = False
        self.used = False  # a meter was asked for by the program: there may be metrics to export at exit
        ref = weakref.ref(self)

        def after_fork_in_child() -> None:
            # A fork while another thread was building leaves the lock held in the child forever.
            provider = ref()
            if provider is not None:
                provider._lock, provider._builder = threading.Lock(), None

        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=after_fork_in_child)

    @property
    def built(self) -> bool:
        """Whether the SDK's MeterProvider exists yet (asking this builds nothing)."""
        return self._sdk is not None

    @property
    def sdk_provider(self) -> Any:
        """The SDK's `opentelemetry.sdk.metrics.MeterProvider`, built now if it was not yet."""
        sdk = self._sdk
        if sdk is None:
            with self._lock:
                if self._sdk is None:
                    self._builder = threading.get_ident()
                    try:
                        built = self._build()
                    finally:
                        self._builder = None
                    for meter in self._waiting:
                        meter.on_set_meter_provider(built)
                    self._sdk, self._waiting = built, []
                sdk = self._sdk
        return sdk

    def get_meter(self, name: str, *args: Any, **kwargs: Any) -> Meter:
        """The SDK's `get_meter` (version, schema_url, attributes as the installed API takes them)."""
        if self._sdk is None:
            if self._failed:
                return NoOpMeter(name, *args, **kwargs)
            if self._shutdown:
                logging.getLogger(_SDK_LOGGER).warning("A shutdown `MeterProvider` can not provide a `Meter`")
                return NoOpMeter(name, *args, **kwargs)
            if self._builder == threading.get_ident():
                # Asked for by the build itself (an exporter's own metrics): it gets a meter that
                # follows the provider once built, as the API's proxy did before the provider was set.
                # The API's private proxy (listed in the README, "Private attributes"); without it
                # those metrics are not recorded (a no-op meter), the build and everything else unchanged.
                try:
                    from opentelemetry.metrics._internal import _ProxyMeter
                except ImportError:
                    return NoOpMeter(name, *args, **kwargs)

                named = {key: kwargs[key] for key in ("version", "schema_url") if key in kwargs}
                waiting = _ProxyMeter(name, *args[:2], **named)
                self._waiting.append(waiting)
                return waiting
        self.used = self.used or name != "cryostorm"  # cryostorm's own meter comes with queued items
        try:
            sdk = self.sdk_provider
        except Exception as exc:
            self._failed = True
            if not (name == "cryostorm" and _interpreter_shutting_down(exc)):
                _say(f"metrics disabled in this process: {type(exc).__name__}: {exc}")
            # else: only cryostorm's own counters asked for it (the first export worker registers them), and
            # the program has ended: Python 3.12 starts no thread then (the SDK's metric reader needs one).
            # Nothing of the program's is lost, so nothing is said.
            return NoOpMeter(name, *args, **kwargs)
        meter: Meter = sdk.get_meter(name, *args, **kwargs)
        return meter

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Collect and export now; True at once when no meter was ever asked for (nothing recorded)."""
        sdk = self._sdk
        return True if sdk is None else bool(sdk.force_flush(timeout_millis=timeout_millis))

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        """Shut the SDK's provider down (its last collection and export); never builds it."""
        with self._lock:  # not while another thread builds it: then the one it built is shut down
            sdk = self._sdk
            if sdk is None:
                if self._shutdown:
                    logging.getLogger(_SDK_LOGGER).warning("shutdown can only be called once")
                self._shutdown = True
                return
        sdk.shutdown(timeout_millis=timeout_millis)


def _interpreter_shutting_down(exc: Exception) -> bool:
    return not threading.main_thread().is_alive() or (isinstance(exc, RuntimeError) and "shutdown" in str(exc))


def _say(message: str) -> None:
    from cryostorm_run.common.shown import scrubbed

    with contextlib.suppress(OSError, ValueError, AttributeError):  # no usable stderr: nothing better to do
        sys.stderr.write(f"cryostorm: {scrubbed(message)}\n")
