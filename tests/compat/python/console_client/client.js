// A pusher-js client in the browser, for test_console_browser.py: connects to Herald with the
// settings in the query string, records every event it receives in window.received, and
// exposes window.sendClientEvent. Channels are authorized by the test server's /auth.
'use strict';
(function () {
  const params = new URLSearchParams(window.location.search);
  window.received = [];
  const client = new Pusher(params.get('key'), {
    wsHost: params.get('host'),
    wsPort: Number(params.get('port')),
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    cluster: 'mt1',
    channelAuthorization: { endpoint: '/auth', transport: 'ajax' },
  });
  client.bind_global((event, data) => window.received.push({ event, data }));
  window.pusherClient = client;
  window.subscribed = {};
  window.subscribeTo = (name) => {
    const channel = client.subscribe(name);
    channel.bind('pusher:subscription_succeeded', () => { window.subscribed[name] = true; });
    channel.bind_global((event, data) => window.received.push({ channel: name, event, data }));
    return true;
  };
  window.sendClientEvent = (name, event, data) => client.channel(name).trigger(event, data);
})();
