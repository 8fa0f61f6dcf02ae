from mailpreflight.cli import main

raise SystemExit(main())
