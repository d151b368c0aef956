#!/usr/bin/python3
"""Simulated BlueZ for Keyfill's BLE tests, on python-dbusmock's `bluez5` template.

Needs DBUS_SYSTEM_BUS_ADDRESS pointing at a private dbus-daemon (session-type config, so any
client may own org.bluez). Run with Debian's /usr/bin/python3 (python3-dbusmock, python3-dbus
and python3-gi live there).

It starts `python3 -m dbusmock --system --template bluez5`, adds adapter hci0 and one device
(MOCK_BLE_ADDR, MOCK_BLE_NAME) carrying the Keyfill GATT service:
  ...0002 "to device"   write, write-without-response: WriteValue(aya{sv})
  ...0003 "from device" read, notify: StartNotify/StopNotify/ReadValue
and relays it to a real device agent: it listens on 127.0.0.1:KEYFILL_BLE_RELAY_PORT for
`keyfill-agent serve --ble-relay`, forwards every WriteValue to it, and notifies (properties
changed, Value) every fragment the agent sends back. Frames on the relay: 2-byte big-endian
length, then the fragment. Prints "READY <device path>" when set up.

Pitfalls this handles: the template's Device1.Connect does not set Connected/ServicesResolved
(btleplug waits for ServicesResolved), so Connect is replaced; bluez-async parses Introspect XML
and rejects a method-less interface listed after child nodes, so GattService1 gets one no-op
method; everything is added in one mock call so no client sees a half-built device.
"""
import os
import signal
import subprocess
import sys
import time

import dbus
import dbusmock

ADAPTER = 'hci0'
ADDR = os.environ.get('MOCK_BLE_ADDR', 'AA:BB:CC:DD:EE:FF')
NAME = os.environ.get('MOCK_BLE_NAME', 'keyfill-dev')
SVC_UUID = '6b657966-696c-6c00-0000-000000000001'
TO_UUID = '6b657966-696c-6c00-0000-000000000002'
FROM_UUID = '6b657966-696c-6c00-0000-000000000003'

CHR = 'org.bluez.GattCharacteristic1'

# Code strings below are exec'd INSIDE the dbusmock process by
# DBusMockObject.mock_method: locals `self` (the mock object) and `args`,
# globals of dbusmock.mockobject (`dbus`, `objects` = path -> mock object).

# Device1.Connect / Disconnect: keep real properties in sync and emit them.
CONNECT = '''
self.connected = True
self.UpdateProperties('org.bluez.Device1', {
    'Connected': dbus.Boolean(True, variant_level=1)})
self.UpdateProperties('org.bluez.Device1', {
    'ServicesResolved': dbus.Boolean(True, variant_level=1)})
'''
DISCONNECT = '''
self.connected = False
self.UpdateProperties('org.bluez.Device1', {
    'ServicesResolved': dbus.Boolean(False, variant_level=1),
    'Connected': dbus.Boolean(False, variant_level=1)})
'''
# "to device" WriteValue(value ay, options a{sv}): forward to the agent over the relay.
WRITE_RELAY = '''
import struct
relay = objects['/'].keyfill_relay
data = bytes(args[0])
if relay.get('conn') is not None:
    try:
        relay['conn'].sendall(struct.pack('>H', len(data)) + data)
    except OSError:
        relay['conn'] = None
'''
# Runs once inside the mock: the relay server and its GLib watches. Fragments from the agent
# become notifications of the "from device" characteristic.
RELAY_SETUP = '''
import socket, struct
from gi.repository import GLib
relay = {'conn': None, 'buffer': b''}
objects['/'].keyfill_relay = relay
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('127.0.0.1', int(args[1])))
server.listen(1)
relay['server'] = server

def on_data(source, condition, relay=relay, rx_path=args[0]):
    import struct
    import dbus
    from dbusmock.mockobject import objects
    try:
        chunk = relay['conn'].recv(4096) if relay['conn'] is not None else b''
    except OSError:
        chunk = b''
    if not chunk:
        relay['conn'] = None
        relay['buffer'] = b''
        return False
    relay['buffer'] += chunk
    rx = objects[rx_path]
    while len(relay['buffer']) >= 2:
        length = struct.unpack('>H', relay['buffer'][:2])[0]
        if len(relay['buffer']) < 2 + length:
            break
        fragment, relay['buffer'] = relay['buffer'][2:2 + length], relay['buffer'][2 + length:]
        value = dbus.Array([dbus.Byte(b) for b in fragment], signature='y')
        rx.props['org.bluez.GattCharacteristic1']['Value'] = value
        if rx.props['org.bluez.GattCharacteristic1']['Notifying']:
            rx.EmitSignal('org.freedesktop.DBus.Properties', 'PropertiesChanged', 'sa{sv}as', [
                'org.bluez.GattCharacteristic1', {'Value': dbus.Array(value, signature='y', variant_level=1)}, []])
    return True

def on_accept(source, condition, relay=relay, on_data=on_data):
    from gi.repository import GLib
    conn, _ = relay['server'].accept()
    if relay['conn'] is not None:
        relay['conn'].close()
    relay['conn'] = conn
    relay['buffer'] = b''
    GLib.io_add_watch(conn.fileno(), GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, on_data)
    return True

GLib.io_add_watch(server.fileno(), GLib.IO_IN, on_accept)
'''
START_NOTIFY = '''
self.UpdateProperties('org.bluez.GattCharacteristic1', {'Notifying': dbus.Boolean(True, variant_level=1)})
'''
STOP_NOTIFY = '''
self.UpdateProperties('org.bluez.GattCharacteristic1', {'Notifying': dbus.Boolean(False, variant_level=1)})
'''
READ_VALUE = "ret = self.props['org.bluez.GattCharacteristic1']['Value']"

# Runs inside the mock on the root object '/': args = (adapter, address, name,
# code dict). Creates the device with the template's AddDevice, replaces its
# Connect/Disconnect and adds the GATT objects in ONE mock call, so no client
# can see the device before its GATT tree and Connect override exist.
# GATT objects are announced with ObjectManager.InterfacesAdded.
ADD_GATT = '''
code = args[3]
dev = str(self.AddDevice(args[0], args[1], args[2]))
svc = dev + '/service0001'
tx, rx = svc + '/char0002', svc + '/char0003'
self.AddObject(svc, 'org.bluez.GattService1', {
    'UUID': dbus.String(code['svc_uuid'], variant_level=1),
    'Primary': dbus.Boolean(True, variant_level=1),
    'Device': dbus.ObjectPath(dev, variant_level=1),
    'Includes': dbus.Array([], signature='o', variant_level=1),
}, [('MockIntrospectAnchor', '', '', '')])  # see NOTE in the module docstring
self.AddObject(tx, 'org.bluez.GattCharacteristic1', {
    'UUID': dbus.String(code['to_uuid'], variant_level=1),
    'Service': dbus.ObjectPath(svc, variant_level=1),
    'Value': dbus.Array([], signature='y', variant_level=1),
    'Notifying': dbus.Boolean(False, variant_level=1),
    'Flags': dbus.Array(['write', 'write-without-response'], signature='s', variant_level=1),
}, [
    ('WriteValue', 'aya{sv}', '', code['write']),
    ('ReadValue', 'a{sv}', 'ay', code['read']),
])
self.AddObject(rx, 'org.bluez.GattCharacteristic1', {
    'UUID': dbus.String(code['from_uuid'], variant_level=1),
    'Service': dbus.ObjectPath(svc, variant_level=1),
    'Value': dbus.Array([], signature='y', variant_level=1),
    'Notifying': dbus.Boolean(False, variant_level=1),
    'Flags': dbus.Array(['read', 'notify'], signature='s', variant_level=1),
}, [
    ('StartNotify', '', '', code['start']),
    ('StopNotify', '', '', code['stop']),
    ('ReadValue', 'a{sv}', 'ay', code['read']),
])
d = objects[dev]
d.AddMethods('org.bluez.Device1', [
    ('Connect', '', '', code['connect']),
    ('Disconnect', '', '', code['disconnect']),
])
d.UpdateProperties('org.bluez.Device1', {
    'UUIDs': dbus.Array([code['svc_uuid']], signature='s', variant_level=1)})
for p in (svc, tx, rx):
    self.EmitSignal('org.freedesktop.DBus.ObjectManager', 'InterfacesAdded', 'oa{sa{sv}}',
                    [dbus.ObjectPath(p), objects[p].props])
ret = dev
'''


def main():
    relay_port = os.environ.get('KEYFILL_BLE_RELAY_PORT')
    if not relay_port:
        sys.exit('KEYFILL_BLE_RELAY_PORT must name the relay port for the device agent')
    addr = os.environ.get('DBUS_SYSTEM_BUS_ADDRESS')
    if not addr:
        sys.exit('DBUS_SYSTEM_BUS_ADDRESS must point at a private dbus-daemon')
    log = os.environ.get('MOCK_BLE_LOG', os.devnull)
    bus = dbus.bus.BusConnection(addr)
    if bus.name_has_owner('org.bluez'):   # e.g. a previous mock still shutting down
        sys.exit('org.bluez is already owned on this bus')
    proc = subprocess.Popen([sys.executable, '-m', 'dbusmock', '--system',
                             '--template', 'bluez5', '--logfile', log])
    for _ in range(100):           # wait until org.bluez is owned
        if bus.name_has_owner('org.bluez'):
            break
        if proc.poll() is not None:
            sys.exit('dbusmock exited early')
        time.sleep(0.1)
    else:
        proc.terminate()
        sys.exit('org.bluez never appeared')

    root = bus.get_object('org.bluez', '/')
    bluez = dbus.Interface(root, 'org.bluez.Mock')
    ctl = dbus.Interface(root, dbusmock.MOCK_IFACE)
    bluez.AddAdapter(ADAPTER, 'keyfill-test')
    # MOCK_BLE_DEVICE_DELAY=N: announce the device N s after start (i.e. while the
    # client is scanning) so it arrives via ObjectManager.InterfacesAdded.
    delay = float(os.environ.get('MOCK_BLE_DEVICE_DELAY', '0'))
    if delay:
        print('READY-ADAPTER', flush=True)
        time.sleep(delay)
    ctl.AddMethod('org.bluez.Mock', 'AddKeyfillDevice', 'sssa{ss}', 's', ADD_GATT)
    dev = bluez.AddKeyfillDevice(ADAPTER, ADDR, NAME, {
        'svc_uuid': SVC_UUID, 'to_uuid': TO_UUID, 'from_uuid': FROM_UUID,
        'write': WRITE_RELAY, 'read': READ_VALUE, 'start': START_NOTIFY,
        'stop': STOP_NOTIFY, 'connect': CONNECT, 'disconnect': DISCONNECT})
    ctl.AddMethod('org.bluez.Mock', 'KeyfillRelay', 'ss', '', RELAY_SETUP)
    bluez.KeyfillRelay(dev + '/service0001/char0003', relay_port)
    print('READY', dev, flush=True)

    def stop(*_):
        proc.terminate()
        proc.wait(5)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    proc.wait()


if __name__ == '__main__':
    main()
