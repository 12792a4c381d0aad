// earshot AudioWorklet processor: placeholder until the browser player lands.
