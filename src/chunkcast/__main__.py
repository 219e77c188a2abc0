from chunkcast.cli import main

raise SystemExit(main())
