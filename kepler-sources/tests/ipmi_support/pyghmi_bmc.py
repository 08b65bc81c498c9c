"""A pyghmi BMC that answers DCMI Get Power Reading (NetFn 0x2C, cmd 0x02).

usage: pyghmi_bmc.py PORT USER PASSWORD STATE_FILE

The state file is re-read on every request, so a test changes the reading by rewriting it:
  "<watts> <active 0|1>"  a reading (current = average = watts, min/max junk)
  "nodcmi"                DCMI answers 0xC1 (invalid command), as a BMC without DCMI
Everything else is pyghmi's own Bmc (sessions, RAKP, Set Session Privilege Level).
"""
import struct
import sys
import time

import pyghmi.ipmi.bmc as bmc


class DcmiBmc(bmc.Bmc):
    def __init__(self, authdata, port, state):
        super().__init__(authdata, port=port, address='127.0.0.1')
        self.state = state

    def get_power_state(self):
        return 'on'

    def handle_raw_request(self, request, session):
        if request['netfn'] != 0x2C:
            return super().handle_raw_request(request, session)
        with open(self.state) as f:
            text = f.read().split()
        data = list(request['data'])
        if not text or text[0] == 'nodcmi' or request['command'] != 0x02:
            return session.send_ipmi_response(code=0xC1)
        if len(data) < 4 or data[0] != 0xDC or data[1] != 0x01:
            return session.send_ipmi_response(code=0xCC)
        watts, active = int(text[0]), int(text[1])
        body = struct.pack('<BHHHHIIB', 0xDC, watts, 0xFFFF, 0, watts,
                           int(time.time()) & 0xFFFFFFFF, 1000,
                           0x40 if active else 0x00)
        session.send_ipmi_response(data=list(body))


if __name__ == '__main__':
    port, user, password, state = sys.argv[1:5]
    server = DcmiBmc({user: password}, int(port), state)
    print('ready', flush=True)
    server.listen()
